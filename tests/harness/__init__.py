"""Integration-test harness: real registries, a token server, an image generator, and the
fakes for what real servers cannot do on demand.

Independent of mirrord on purpose (plain httpx + subprocess), so it checks mirrord from the
outside. Modules: `registry` (RegistryProcess), `tokenserver` (TokenServer), `images`
(builders, pushers, RegistryHTTP), `tls` (self-signed certificates); `hostile` (a lying
upstream with a credential catcher; documents in `hostile_images`), `faultproxy` (an HTTP
fault proxy in front of a real registry), `faults` (the fault rules both share), `reqlog`
(their request logs), `outage` (timed outages, refused ports). Fixtures: tests/conftest.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

__all__ = ["ALICE", "ROBOT", "USERS", "Credentials"]


@dataclass(frozen=True)
class Credentials:
    """A username/password pair; unpacks as a tuple, never shows the password in its repr."""

    username: str
    password: str = field(repr=False)

    def __iter__(self) -> Iterator[str]:
        return iter((self.username, self.password))


#: a person
ALICE = Credentials("alice", "alice-harness-Pa55")
#: a service account in the registry.redhat.io style (`<org id>|<name>`)
ROBOT = Credentials("12345678|robot", "eyJhbGciOiJSUzUxMiJ9.robot-harness-token")
#: every harness registry with auth (Basic and token) knows exactly these users
USERS: dict[str, str] = {ALICE.username: ALICE.password, ROBOT.username: ROBOT.password}
