"""The ``pruning:`` section: OpenShift ImagePruner keys (``keepTagRevisions``, as users
copy them from the CR), each with a snake_case alias like the rest of the file."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from mirrord.config._types import PruningConfig
from mirrord.config._values import _duration, _schedule
from mirrord.config._yaml import _At

_PRUNING: dict[str, tuple[str, Callable[[_At], Any]]] = {
    "schedule": ("schedule", _schedule),
    "suspend": ("suspend", _At.boolean),
    "keepTagRevisions": ("keep_tag_revisions", lambda a: a.integer(0)),
    "keepYoungerThanDuration": ("keep_younger_than", _duration),
    "keepYoungerThan": ("keep_younger_than", lambda a: a.integer(0) / 1e9),
    "pruneRegistry": ("prune_registry", _At.boolean),
    "successfulJobsHistoryLimit": ("successful_jobs_history_limit", lambda a: a.integer(1)),
    "failedJobsHistoryLimit": ("failed_jobs_history_limit", lambda a: a.integer(1)),
}


def _snake_case(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


#: The pruner's keys keep OpenShift's ImagePruner spellings (``keepTagRevisions``, as
#: users copy them from the CR); each has a snake_case alias like the rest of the file.
_PRUNING_ALIASES = {_snake_case(k): k for k in _PRUNING if _snake_case(k) != k}


def _pruning_keys(at: _At) -> dict[str, _At]:
    """The pruning keys by their OpenShift name; an alias and its original together is
    an error naming both lines."""
    keys = at.mapping((*_PRUNING, *_PRUNING_ALIASES))
    for alias, name in _PRUNING_ALIASES.items():
        if alias not in keys:
            continue
        if name in keys:
            first, second = sorted((keys[alias], keys[name]), key=lambda a: a.line)
            raise second.error(
                f"`{alias}` and `{name}` are the same setting (lines {first.line} and "
                f"{second.line}); write it once"
            )
        keys[name] = keys.pop(alias)
    return keys


def pruning_config(at: _At) -> PruningConfig:
    """The ``pruning:`` section (OpenShift ImagePruner semantics and spellings)."""
    keys = _pruning_keys(at)
    if "keepYoungerThanDuration" in keys:
        keys.pop("keepYoungerThan", None)  # deprecated nanoseconds lose to the duration
    values = {_PRUNING[k][0]: _PRUNING[k][1](v) for k, v in keys.items()}
    return dataclasses.replace(PruningConfig(), **values)
