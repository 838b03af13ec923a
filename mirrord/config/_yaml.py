"""The YAML node walker of the configuration: every value with its file, line and key path.

:class:`_At` wraps a node; its accessors check the kind and range of a value and
raise a :class:`ConfigError` naming ``file:line: key.path``. Unknown keys get a
"did you mean" hint; credential-looking keys are refused outright.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mirrord.errors import ConfigError

_CREDENTIAL_KEYS = frozenset(
    {
        "username",
        "user",
        "password",
        "pass",
        "passwd",
        "auth",
        "token",
        "identitytoken",
        "identity_token",
        "registrytoken",
        "credentials",
        "secret",
        "bearer",
    }
)

_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")  # C0 and C1, tab allowed
MAX_INTEGER = 2**53  # every integer setting is far below; a float holds it exactly
NAME_MAX, PATH_MAX = 255, 4096  # Linux's limits for a file name and a path

_NULL, _BOOL = "tag:yaml.org,2002:null", "tag:yaml.org,2002:bool"
_INT, _FLOAT = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
_MERGE = "tag:yaml.org,2002:merge"
_KINDS = {_NULL: "nothing (null)", _BOOL: "a boolean", _INT: "an integer", _FLOAT: "a number"}


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return _KINDS.get(node.tag, "a string")


@dataclass(frozen=True)
class _Doc:
    """The document being read: its name in errors, the directory relative paths start
    from, its loader, and the home directory a leading ``~`` stands for."""

    file: str
    base: Path
    loader: yaml.SafeLoader
    home: Path


@dataclass(frozen=True)
class _At:
    """A YAML node with the file, its line and its key path, for error messages."""

    doc: _Doc
    node: yaml.Node
    key: str

    @property
    def line(self) -> int:
        return int(self.node.start_mark.line) + 1

    def error(self, message: str) -> ConfigError:
        return ConfigError(message, file=self.doc.file, line=self.line, key=self.key)

    def sub(self, name: str, *, quoted: bool = False) -> str:
        if quoted:
            # A key like user:password@host must not carry its secret into messages.
            shown = "…@" + name.rsplit("@", 1)[1] if "@" in name else name
            return f'{self.key}["{shown}"]'
        return f"{self.key}.{name}" if self.key else name

    def missing(self, name: str, what: str) -> ConfigError:
        return _At(self.doc, self.node, self.sub(name)).error(f"missing `{name}:` ({what})")

    def mapping(self, allowed: Collection[str] | None) -> dict[str, _At]:
        """The values of a mapping by key; unknown keys are errors."""
        return {str(k.node.value): v for k, v in self.entries(allowed)}

    def entries(
        self,
        allowed: Collection[str] | None,
        *,
        quoted: bool = False,
    ) -> list[tuple[_At, _At]]:
        """(key, value) pairs of a mapping; ``allowed=None`` accepts any key."""
        node = self.node
        if node.tag == _NULL:  # `pruning:` with nothing after it
            return []
        if not isinstance(node, yaml.MappingNode):
            raise self.error(f"expected a mapping, got {_kind(node)}")
        merges = any(k.tag == _MERGE for k, _ in node.value)
        try:
            self.doc.loader.flatten_mapping(node)
        except yaml.MarkedYAMLError as exc:
            raise self.error(f"invalid merge key: {exc.problem}") from None
        out: dict[str, tuple[_At, _At]] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _NULL:
                raise _At(self.doc, key_node, self.key).error("keys must be plain names")
            name = str(key_node.value)
            at_key = _At(self.doc, key_node, self.sub(name, quoted=quoted))
            if name in out and not merges:
                raise at_key.error(f"duplicate key {name!r} (first on line {out[name][0].line})")
            if name.lower() in _CREDENTIAL_KEYS:
                raise at_key.error(
                    "credentials never go in the configuration file: set `auth_file:` "
                    "(a containers auth.json or pull secret) or run `mirrord login HOST`"
                )
            if allowed is not None and name not in allowed:
                raise at_key.error(f"unknown key {name!r}{_did_you_mean(name, allowed)}")
            out[name] = (at_key, _At(self.doc, value_node, at_key.key))
        return list(out.values())

    def sequence(self) -> list[_At]:
        if self.node.tag == _NULL:  # `streams:` with nothing after it
            return []
        if not isinstance(self.node, yaml.SequenceNode):
            raise self.error(f"expected a list, got {_kind(self.node)}")
        return [_At(self.doc, n, f"{self.key}[{i}]") for i, n in enumerate(self.node.value)]

    def text(self) -> str:
        """A string; plain scalars stay as written (``9.4`` is "9.4", not 9.4)."""
        if not isinstance(self.node, yaml.ScalarNode) or self.node.tag == _NULL:
            raise self.error(f"expected a string, got {_kind(self.node)}")
        value = str(self.node.value).strip()
        if not value:
            raise self.error("must not be empty")
        if bad := _CONTROL.search(value):
            # A quoted "\0" or "\x01" passes the YAML reader; no value needs one.
            raise self.error(f"control character {bad.group()!r} in the value")
        return value

    def texts(self) -> tuple[_At, ...]:
        """A list of strings, or one string."""
        items = [self] if isinstance(self.node, yaml.ScalarNode) else self.sequence()
        for item in items:
            item.text()
        return tuple(items)

    def _typed(self, tags: Collection[str], what: str) -> Any:
        if not isinstance(self.node, yaml.ScalarNode) or self.node.tag not in tags:
            raise self.error(f"expected {what}, got {_kind(self.node)}")
        return self.doc.loader.construct_object(self.node, deep=True)

    def integer(self, minimum: int | None = None, maximum: int = MAX_INTEGER) -> int:
        """An integer in range (the default maximum keeps every value storable in
        SQLite and usable in arithmetic)."""
        value = int(self._typed({_INT}, "an integer"))
        if minimum is not None and value < minimum:
            raise self.error(f"must be {minimum} or more, got {value}")
        if value > maximum:
            raise self.error(f"must be at most {maximum}, got {str(value)[:30]}")
        return value

    def number(self, minimum: float = 0.0, maximum: float = 1e9) -> float:
        """A positive number: more than 0 and at least ``minimum``, at most ``maximum``."""
        try:
            value = float(self._typed({_INT, _FLOAT}, "a number"))
        except OverflowError:  # an integer with hundreds of digits
            raise self.error("the number is too large") from None
        if not value > 0 or not minimum <= value <= maximum:
            raise self.error(
                f"must be a positive number from {minimum:g} to {maximum:g}, got {value:g}"
            )
        return value

    def boolean(self) -> bool:
        return bool(self._typed({_BOOL}, "true or false"))

    def path(self, text: str | None = None) -> Path:
        """A path; ``~`` is the home directory, a relative path starts at the file's."""
        value = text if text is not None else self.text()
        if _CONTROL.search(value):
            raise self.error("a path must not hold NUL or control characters")
        if value == "~" or value.startswith("~/"):
            value = str(self.doc.home) + value[1:]
        path = Path(value)
        path = path if path.is_absolute() else self.doc.base / path
        longest = max((len(_encoded(p)) for p in path.parts), default=0)
        if longest > NAME_MAX:
            raise self.error(f"a path component is longer than {NAME_MAX} bytes")
        if len(_encoded(str(path))) > PATH_MAX:
            raise self.error(f"the path is longer than {PATH_MAX} bytes")
        return path


def _encoded(name: str) -> bytes:
    """``name`` as the file system sees it (what os.fsencode does, without os)."""
    return name.encode("utf-8", "surrogateescape")


def _did_you_mean(name: str, allowed: Collection[str]) -> str:
    squash = {a.lower().replace("_", "").replace("-", ""): a for a in allowed}
    same = squash.get(name.lower().replace("_", "").replace("-", ""))
    close = [same] if same else difflib.get_close_matches(name, list(allowed), n=1, cutoff=0.6)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f" (expected one of: {', '.join(sorted(allowed))})"
