"""The one renderer of the command line: documents as JSON or YAML, rows as tables."""

from __future__ import annotations

import enum
import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

import yaml


class _Dumper(yaml.SafeDumper):
    """yaml's safe dumper, which also writes string enums (import modes…) as strings."""


_Dumper.add_multi_representer(
    enum.StrEnum, lambda dumper, value: dumper.represent_str(str(value.value))
)


def render(document: Any, fmt: str) -> str:
    """``json`` (indented) or ``yaml`` text of a document, ending in a newline."""
    if fmt == "yaml":
        return str(yaml.dump(document, Dumper=_Dumper, sort_keys=False, default_flow_style=False))
    return json.dumps(document, indent=2) + "\n"


def print_document(document: Any, fmt: str, out: TextIO | None = None) -> None:
    """``document`` on stdout (or ``out``) as indented JSON or as YAML."""
    print(render(document, fmt), end="", file=out or sys.stdout)


def table(rows: Sequence[Sequence[str]], gap: int = 2) -> str:
    """Left-aligned columns, the first row a header; trailing spaces trimmed."""
    if not rows:
        return ""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        (" " * gap).join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    return "\n".join(lines) + "\n"
