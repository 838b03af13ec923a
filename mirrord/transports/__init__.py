"""Where images come from and go to, behind one small interface.

A :class:`Source` is read from (a registry); a :class:`Destination` is the mirror:
a registry (``docker://host/prefix``) or an OCI image layout (``oci:/path``), the
embedded default that an air-gapped site can carry across.
"""

from __future__ import annotations

from mirrord.transports._base import Destination, Source
from mirrord.transports._ocilayout import OCILayoutDestination
from mirrord.transports._registry import RegistryDestination

__all__ = ["Destination", "OCILayoutDestination", "RegistryDestination", "Source"]
