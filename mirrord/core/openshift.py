"""Image streams as ``image.openshift.io/v1`` objects, with valid Kubernetes names. Pure.

A mirrord stream is named by its mirror path (``ubi9/ubi``, ``openshift/release/ocp``),
which is no Kubernetes object name. :func:`object_names` maps it:

- ``metadata.namespace`` is the first path component as a DNS-1123 label: ``.`` and
  ``_`` become ``-`` (``my_org`` → ``my-org``). A one-component stream (``nginx``) has
  no namespace component and lands in ``default``.
- ``metadata.name`` is the rest of the path, its components joined by ``.`` and each
  ``_`` made ``-`` (``release/ocp_x`` → ``release.ocp-x``): a DNS-1123 subdomain that
  also matches OpenShift's image-stream name rule (a repository path component).
- A label longer than 63 characters, or a name longer than 253, is cut and ends in
  ``-`` and 8 hex digits of the SHA-256 of the stream name, so distinct long names
  stay distinct.

Two stream names can map to one object name (``a/b_c`` and ``a/b-c``); the stream's
own name is kept in the ``mirrord.io/stream`` annotation.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from mirrord.core.imagestream import (
    IMPORT_FAILURE,
    REPOSITORY_CHECK,
    TAG_SCHEDULED,
    TAGGED,
    Condition,
    ImageStream,
    TagEvent,
    TagStatus,
    rfc3339,
    tag_origin,
    tag_policy,
)

STREAM_ANNOTATION = "mirrord.io/stream"  # the stream's own name (its mirror path)
DEFAULT_NAMESPACE = "default"  # for a stream whose name has one component
MAX_LABEL = 63
MAX_SUBDOMAIN = 253
_LABEL = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
DNS1123_LABEL_RE = re.compile(_LABEL)
DNS1123_SUBDOMAIN_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")


def is_dns1123_label(text: str) -> bool:
    """A Kubernetes namespace: lower-case alphanumerics and ``-``, at most 63."""
    return len(text) <= MAX_LABEL and DNS1123_LABEL_RE.fullmatch(text) is not None


def is_dns1123_subdomain(text: str) -> bool:
    """A Kubernetes object name: DNS-1123 labels joined by ``.``, at most 253."""
    return (
        len(text) <= MAX_SUBDOMAIN
        and DNS1123_SUBDOMAIN_RE.fullmatch(text) is not None
        and all(len(label) <= MAX_LABEL for label in text.split("."))
    )


def _hash8(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def _fit_label(label: str, seed: str) -> str:
    if len(label) <= MAX_LABEL:
        return label
    return f"{label[: MAX_LABEL - 9].rstrip('-')}-{_hash8(seed)}"


def object_names(stream_name: str) -> tuple[str, str]:
    """``(namespace, name)`` of the stream called ``stream_name`` (a repository path)."""
    components = stream_name.split("/")
    if len(components) == 1:
        namespace, rest = DEFAULT_NAMESPACE, components
    else:
        namespace = components[0].replace("_", "-").replace(".", "-")
        rest = components[1:]
    namespace = _fit_label(namespace, stream_name)
    labels = [
        _fit_label(label, f"{stream_name}#{i}")
        for i, label in enumerate(".".join(c.replace("_", "-") for c in rest).split("."))
    ]
    name = ".".join(labels)
    if len(name) > MAX_SUBDOMAIN:
        name = f"{name[: MAX_SUBDOMAIN - 9].rstrip('.-')}-{_hash8(stream_name)}"
    return namespace, name


# -- the documents -------------------------------------------------------------------


def _event_dict(event: TagEvent) -> dict[str, Any]:
    return {
        "created": rfc3339(event.created),
        "dockerImageReference": event.docker_image_reference,
        "image": event.image,
        "generation": event.generation,
    }


def _condition_dict(condition: Condition) -> dict[str, Any]:
    return {
        "type": condition.type,
        "status": condition.status,
        "reason": condition.reason,
        "message": condition.message,
        "generation": condition.generation,
        "lastTransitionTime": rfc3339(condition.last_transition_time),
    }


def tag_status_dict(status: TagStatus) -> dict[str, Any]:
    """One ``status.tags[]`` entry: the tag's history (newest first) and conditions."""
    out: dict[str, Any] = {"tag": status.tag, "items": [_event_dict(e) for e in status.items]}
    conditions = [c for c in status.conditions if c.type != TAGGED]  # that one is spec
    if conditions:  # omitempty, as OpenShift serialises it
        out["conditions"] = [_condition_dict(c) for c in conditions]
    return out


def _tag_from(stream: ImageStream, status: TagStatus) -> dict[str, Any]:
    """``spec.tags[].from``: the source's tag, or what ``mirrord tag`` pointed it at (an
    ``ImageStreamTag`` of another mirrord stream, or a ``DockerImage``)."""
    origin = tag_origin(status)
    if origin is None:
        return {"kind": "DockerImage", "name": f"{stream.source}:{status.tag}"}
    kind, _, reference = origin.partition(" ")
    if kind == "ImageStreamTag" and reference:
        other, _, tag = reference.rpartition(":")
        namespace, name = object_names(other)
        return {"kind": kind, "namespace": namespace, "name": f"{name}:{tag}"}
    return {"kind": "DockerImage", "name": reference or origin}


def _spec_tag(stream: ImageStream, status: TagStatus) -> dict[str, Any]:
    origin = tag_origin(status)
    return {
        "name": status.tag,
        "from": _tag_from(stream, status),
        "importPolicy": {
            "scheduled": (stream.scheduled and origin is None)
            or tag_policy(status) == TAG_SCHEDULED,
            "importMode": stream.import_mode.value,
        },
        "referencePolicy": {"type": stream.reference_policy.value},
    }


def to_openshift(stream: ImageStream, *, include_removed: bool = False) -> dict[str, Any]:
    """The ``image.openshift.io/v1`` ImageStream of a stream (tags sorted by name), with
    the names of :func:`object_names`."""
    tags = sorted((t for t in stream.tags if include_removed or not t.removed), key=lambda t: t.tag)
    namespace, name = object_names(stream.name)
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "generation": stream.generation,
        "creationTimestamp": rfc3339(stream.created),
    }
    annotations = {STREAM_ANNOTATION: stream.name}
    if stream.last_synced is not None:
        # OpenShift stamps the same annotation when an import of the repository succeeds.
        annotations[REPOSITORY_CHECK] = rfc3339(stream.last_synced)
    if stream.failure is not None:
        annotations[IMPORT_FAILURE] = f"{stream.failure.reason}: {stream.failure.message}"
    metadata["annotations"] = annotations
    return {
        "apiVersion": "image.openshift.io/v1",
        "kind": "ImageStream",
        "metadata": metadata,
        "spec": {"lookupPolicy": {"local": False}, "tags": [_spec_tag(stream, t) for t in tags]},
        "status": {
            "dockerImageRepository": stream.docker_image_repository,
            "tags": [tag_status_dict(t) for t in tags],
        },
    }
