"""Where images come from and go to, behind one small interface.

A :class:`Source` is read from (a registry); a :class:`Destination` is the mirror:
a registry (``docker://host/prefix``) or an OCI image layout (``oci:/path``), the
embedded default that an air-gapped site can carry across. :class:`ClientPool` and
:func:`open_destination` open them from the configuration; :func:`read_children`
reads indexes back from the mirror; :func:`collect_garbage` removes the blobs an
OCI layout no longer needs.
"""

from __future__ import annotations

from mirrord.transports._base import Destination, Source
from mirrord.transports._connect import (
    ClientPool,
    find_credential,
    open_destination,
    prepare_tls,
    registry_options,
    retry_policies,
)
from mirrord.transports._layoutgc import collect_garbage
from mirrord.transports._ocilayout import OCILayoutDestination
from mirrord.transports._read import read_children, read_manifest
from mirrord.transports._registry import RegistryDestination

__all__ = [
    "ClientPool",
    "Destination",
    "OCILayoutDestination",
    "RegistryDestination",
    "Source",
    "collect_garbage",
    "find_credential",
    "open_destination",
    "prepare_tls",
    "read_children",
    "read_manifest",
    "registry_options",
    "retry_policies",
]
