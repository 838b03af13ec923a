"""``mirrord import-image``: the ``oc import-image`` surface over mirrord's image streams.

A request names a stream (``STREAM[:TAG]``) and maybe a source (``--from``).
:func:`resolve` decides, as ``oc`` does, whether it may go ahead:

- a stream that is neither configured nor stored is created only with
  ``--confirm``; its source is ``--from``, else the name itself;
- a tag together with ``--all`` is refused, so is an image by digest;
- a configured stream keeps its configuration: another source, policy or a tag
  outside its selection is refused (edit the file instead);
- a stored stream changes its source only with ``--confirm``; a tag it does not
  have needs ``--from`` (``oc``: "use the 'tag' command").

Then the request runs (``mirrord._cli_streams``) as one recorded sync of the
:class:`StreamConfig` built for it: the images are copied, not only their
metadata. Streams created here are stored with ``created_by="import-image"``;
:func:`stored_streams` turns them back into StreamConfigs for the daemon.
Whether a stream imports the whole repository (``--all``) is part of its stored
spec; otherwise its tags are the tags the store knows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from mirrord.config import Config, StreamConfig
from mirrord.core.imagestream import (
    TAG_ALIAS,
    TAG_SCHEDULED,
    ImageStream,
    TagStatus,
    tag_origin,
    tag_policy,
)
from mirrord.core.modes import ImportMode, ReferencePolicy
from mirrord.core.reference import parse
from mirrord.core.selection import Criteria, select_tags
from mirrord.errors import InvalidReferenceError
from mirrord.sync._recorder import ImportedStream

DEFAULT_TAG = "latest"


@dataclass(frozen=True)
class ImportRequest:
    """The command line of one ``import-image``; None means "not given"."""

    target: str
    from_ref: str | None = None
    all: bool = False
    confirm: bool = False
    scheduled: bool | None = None
    reference_policy: ReferencePolicy | None = None
    import_mode: ImportMode | None = None
    insecure: bool = False
    dry_run: bool = False
    wait: bool = False


@dataclass(frozen=True)
class Refusal:
    """Why a request cannot go ahead. ``usage``: the request itself is wrong (exit 2);
    otherwise it conflicts with what is stored or configured (exit 1)."""

    message: str
    usage: bool = False


@dataclass(frozen=True)
class Target:
    """``STREAM[:TAG]`` and ``--from`` read together."""

    name: str
    tag: str | None
    """The tag to import; None with ``--all``, or for a bare stream name (the stream's
    own tags when it exists, else ``latest``)."""
    source: str | None
    """The repository asked for (``--from``, or a target with a registry host)."""
    fallback_source: str
    """The source of a new stream without ``--from``: the name itself."""


@dataclass(frozen=True)
class ImportPlan:
    """What to run: ``stream`` has its tags narrowed to the request (an import-image
    stream also carries what to store: whether it imports its whole repository)."""

    stream: StreamConfig
    complete: bool = True
    """The run covers the stream's whole selection (what a scheduled run imports), so
    its success counts as the stream's last sync; False for one tag out of several."""


# -- reading the request ---------------------------------------------------------


def _has_host(text: str) -> bool:
    first, sep, _ = text.partition("/")
    return bool(sep) and ("." in first or ":" in first or first == "localhost")


def parse_target(request: ImportRequest) -> Target | Refusal:
    """``STREAM[:TAG]`` and ``--from``; refusals of malformed or contradictory input."""
    try:
        ref = parse(request.target)
    except InvalidReferenceError as error:
        return Refusal(
            f"{error}: the image name must be a stream name or a pull spec "
            "(e.g. myregistry/myteam/image:tag)",
            usage=True,
        )
    if ref.digest:
        return Refusal("to import an image by ID, import a tag that points to it", usage=True)
    if ref.tag and request.all:
        return Refusal(f'cannot specify a tag "{request.target}" as well as --all', usage=True)
    host = _has_host(request.target)
    name = ref.repository if host else request.target.partition(":")[0]
    source: str | None = ref.name if host else None
    from_tag: str | None = None
    if request.from_ref:
        try:
            from_ref = parse(request.from_ref)
        except InvalidReferenceError as error:
            return Refusal(f"--from: {error}", usage=True)
        if from_ref.digest:
            return Refusal("--from: mirrord imports tags, not images by digest", usage=True)
        if from_ref.tag and request.all:
            return Refusal(
                "--all imports a whole repository: --from must name a repository, not a tag",
                usage=True,
            )
        source, from_tag = from_ref.name, from_ref.tag
    if ref.tag and from_tag and ref.tag != from_tag:
        return Refusal(
            f"mirrord mirrors a tag under its own name: {name}:{ref.tag} cannot be imported "
            f"from {request.from_ref} (use --from {source}:{ref.tag}, or {name}:{from_tag})",
            usage=True,
        )
    # A pull spec without a tag means its latest; a bare stream name means the stream's
    # own tags when it exists (as `oc import-image STREAM`), latest for a new one.
    tag = ref.tag or from_tag or (DEFAULT_TAG if source is not None else None)
    return Target(name, None if request.all else tag, source, ref.name)


# -- deciding --------------------------------------------------------------------


def imported_stream(
    config: Config,
    name: str,
    source: str,
    tags: tuple[str, ...] | None,
    *,
    scheduled: bool,
    reference_policy: ReferencePolicy,
    import_mode: ImportMode,
    import_all: bool,
) -> ImportedStream:
    """An import-image stream with the configuration's defaults for everything else."""
    defaults = config.defaults
    return ImportedStream(
        name=name,
        source=source,
        to=name,
        tags=tags,
        max_tags=defaults.max_tags,
        import_mode=import_mode,
        platform=defaults.platform,
        schedule=defaults.schedule,
        reference_policy=reference_policy,
        signatures=defaults.signatures,
        referrers=defaults.referrers,
        delete_removed_tags=defaults.delete_removed_tags,
        scheduled=scheduled,
        import_all=import_all,
    )


def resolve(
    config: Config,
    request: ImportRequest,
    target: Target,
    stored: ImageStream | None,
) -> ImportPlan | Refusal:
    """The plan for ``request``, or why ``oc`` would refuse it."""
    configured = next((s for s in config.streams if s.name == target.name), None)
    if configured is not None:
        return _resolve_configured(config, request, target, configured)
    if stored is not None:
        return _resolve_stored(config, request, target, stored)
    if not request.confirm:
        return Refusal(
            f'the image stream "{target.name}" does not exist, pass --confirm to create and import'
        )
    stream = imported_stream(
        config,
        target.name,
        target.source or target.fallback_source,
        None if request.all else (target.tag or DEFAULT_TAG,),
        scheduled=bool(request.scheduled),
        reference_policy=request.reference_policy or config.defaults.reference_policy,
        import_mode=request.import_mode or config.defaults.import_mode,
        import_all=request.all,
    )
    return ImportPlan(stream)


def _resolve_configured(
    config: Config, request: ImportRequest, target: Target, stream: StreamConfig
) -> ImportPlan | Refusal:
    where = str(config.path) if config.path else "the embedded default configuration"
    name = stream.name
    if target.source is not None and target.source != stream.source:
        return Refusal(
            f'the image stream "{name}" is defined in {where} and imports from {stream.source}; '
            f"change its `from:` there to import from {target.source}"
        )
    for flag, asked, has in (
        ("--reference-policy", request.reference_policy, stream.reference_policy),
        ("--import-mode", request.import_mode, stream.import_mode),
    ):
        if asked is not None and asked != has:
            return Refusal(
                f'the image stream "{name}" is defined in {where} with {has}; '
                f"change it there instead of passing {flag} {asked}"
            )
    if request.scheduled is False:
        return Refusal(f'the image stream "{name}" is defined in {where}: it is always scheduled')
    if target.tag is None:
        return ImportPlan(stream)
    if not _selects(stream, target.tag):
        return Refusal(
            f'the tag "{target.tag}" is not part of the image stream "{name}" defined in '
            f"{where}; add it there to import it"
        )
    narrowed = dataclasses.replace(stream, tags=(target.tag,))
    return ImportPlan(narrowed, complete=stream.tags == (target.tag,))


def _selects(stream: StreamConfig, tag: str) -> bool:
    """True when ``tag`` belongs to the configured stream's selection."""
    if stream.tags is not None:
        return tag in stream.tags
    criteria = Criteria(
        include=stream.include, exclude=stream.exclude, semver=stream.semver, max_tags=-1
    )
    return select_tags([tag], criteria).selected == (tag,)


def _resolve_stored(
    config: Config, request: ImportRequest, target: Target, stored: ImageStream
) -> ImportPlan | Refusal:
    name = stored.name
    if target.source is not None and target.source != stored.source and not request.confirm:
        return Refusal(
            f'the image stream "{name}" imports from {stored.source}, pass --confirm to '
            f"import from {target.source} instead"
        )
    known = tuple(t.tag for t in stored.tags if not t.removed)
    tags: tuple[str, ...] | None
    import_all = spec_all = stored.import_all
    if target.tag is not None:
        if not (spec_all or target.tag in known or target.source is not None):
            return Refusal(
                f'the tag "{target.tag}" does not exist on the image stream "{name}" - choose '
                "an existing tag to import or pass --from to add it"
            )
        tags = (target.tag,)
    elif spec_all:
        tags = None
    elif target.source is None:  # oc: re-import the tags the stream has
        if not known:
            return Refusal(f'the image stream "{name}" has no tags to import')
        tags = known
    elif not request.confirm:
        return Refusal(
            f'the image stream "{name}" does not currently import an entire repository, '
            "pass --confirm to update"
        )
    else:
        tags, import_all = None, True
    stream = imported_stream(
        config,
        name,
        target.source or stored.source,
        tags,
        scheduled=stored.scheduled if request.scheduled is None else request.scheduled,
        reference_policy=request.reference_policy or stored.reference_policy,
        import_mode=request.import_mode or stored.import_mode,
        import_all=import_all,
    )
    complete = tags is None or set(known) <= set(tags)
    return ImportPlan(stream, complete=complete and not (spec_all and tags is not None))


# -- import-image streams as the daemon runs them ---------------------------------


def stored_streams(config: Config, streams: Sequence[ImageStream]) -> tuple[StreamConfig, ...]:
    """StreamConfigs of the streams ``import-image`` created (not in the configuration).

    Each carries its stored flags (``scheduled``, import mode, reference policy) and
    its tags: every tag of the repository (``tags=None``, capped by ``max_tags``) for
    a stream created with ``--all``, else the tags it has imported (not those
    ``mirrord tag`` pointed at another source; a stream with none is left out, unless
    a run follows one of those: :mod:`._follow`). The instances are
    :class:`~mirrord.sync.ImportedStream`, so a run keeps them ``import-image``.
    """
    configured = {s.name for s in config.streams}
    out: list[StreamConfig] = []
    for stream in streams:
        if stream.created_by != "import-image" or stream.name in configured:
            continue
        tags: tuple[str, ...] | None = None
        if not stream.import_all:
            # a tag `mirrord tag` pointed elsewhere is not re-imported from the source; a
            # stream of only such tags runs when one of them is followed (--alias/--scheduled)
            tags = tuple(t.tag for t in stream.tags if not t.removed and tag_origin(t) is None)
            if not tags and not any(_followed(t) for t in stream.tags):
                continue
        out.append(
            imported_stream(
                config,
                stream.name,
                stream.source,
                tags,
                scheduled=stream.scheduled,
                reference_policy=stream.reference_policy,
                import_mode=stream.import_mode,
                import_all=stream.import_all,
            )
        )
    return tuple(out)


def _followed(status: TagStatus) -> bool:
    """A tag a run of its stream follows (``mirrord tag --alias``/``--scheduled``)."""
    return not status.removed and tag_policy(status) in (TAG_ALIAS, TAG_SCHEDULED)
