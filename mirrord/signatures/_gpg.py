"""OpenPGP verification of simple-signing blobs with GnuPG's own binaries.

A :class:`GPGKeyring` is a throwaway GnuPG home holding one requirement's keys, imported once
with ``gpg --import``; its ``fingerprints`` are the primary keys it holds (the identities
containers/image accepts). :meth:`GPGKeyring.verify` runs ``gpgv`` (verification only: no
agent, no trust database, no network) and reads its ``--status-fd`` output on a private pipe:
exactly one signature, ``GOODSIG`` and ``VALIDSIG``, no ``BADSIG``/``ERRSIG``/expired or
revoked key, and the primary-key fingerprint of ``VALIDSIG`` among ``fingerprints``. The
signed content (stdout) is bounded, so a compressed message cannot inflate without limit.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

import anyio
import anyio.abc

from mirrord.errors import ConfigError, StorageError

MAX_CONTENT = 4 * 1024 * 1024
_MAX_STATUS = 256 * 1024
_TIMEOUT = 30.0
_PREFIX = b"\x00simple-signing\n"
# First bytes of a binary OpenPGP message containing a signature (containers/image
# internal/signature FromBlob): a compressed-data, one-pass-signature or signature packet.
_OPENPGP_FIRST = frozenset(
    {0xA0, 0xA1, 0xA2, 0xA3, 0xC8, 0x90, 0x91, 0x92, 0x93, 0xC4, 0x88, 0x89, 0x8A, 0x8B, 0xC2}
)
_BAD_STATUS = frozenset({"BADSIG", "ERRSIG", "EXPSIG", "EXPKEYSIG", "REVKEYSIG", "NO_PUBKEY",
                         "FAILURE", "NODATA"})


def openpgp_message(blob: bytes) -> bytes:
    """The OpenPGP message of a simple-signing blob (plain, or in containers/image's
    ``\\x00simple-signing\\n`` envelope); raises ``ValueError`` for any other format."""
    if blob.startswith(_PREFIX):
        blob = blob[len(_PREFIX):]
    if not blob:
        raise ValueError("empty signature")
    if blob[0] not in _OPENPGP_FIRST:
        raise ValueError(f"not a simple-signing signature (starts with byte {blob[0]:#04x})")
    return blob


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ConfigError(f"a signedBy requirement needs {name!r} on PATH (Debian package "
                          f"gnupg / gpgv)", key="signedBy")
    return path


def _env() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}


class GPGKeyring:
    """The keys of one ``signedBy`` requirement in their own GnuPG home under ``home``."""

    def __init__(self, home: Path, fingerprints: frozenset[str]) -> None:
        self.home = home
        self.fingerprints = fingerprints
        kbx = home / "pubring.kbx"
        self._keyring = kbx if kbx.exists() else home / "pubring.gpg"
        self._gpgv = _tool("gpgv")

    @classmethod
    async def create(cls, home: Path, keys: Sequence[bytes], sources: Sequence[str]) -> GPGKeyring:
        """Import ``keys`` into the new directory ``home``; a source that yields no key is
        a :class:`ConfigError` naming it."""
        gpg = _tool("gpg")
        home.mkdir(mode=0o700)
        fingerprints: set[str] = set()
        for index, (data, source) in enumerate(zip(keys, sources, strict=True)):
            key_file = home / f"import-{index}"
            key_file.write_bytes(data)
            cmd = [gpg, "--homedir", str(home), "--batch", "--no-tty", "--no-autostart",
                   "--no-permission-warning", "--status-fd", "1", "--import", str(key_file)]
            try:
                with anyio.fail_after(_TIMEOUT):
                    done = await anyio.run_process(cmd, check=False, env=_env(),
                                                   stdin=subprocess.DEVNULL)
            except TimeoutError:
                raise ConfigError(f"{source}: gpg --import did not finish in {_TIMEOUT:.0f} s",
                                  key="signedBy") from None
            key_file.unlink()
            found = {line.split()[3].decode().upper()
                     for line in done.stdout.splitlines()
                     if line.startswith(b"[GNUPG:] IMPORT_OK ") and len(line.split()) >= 4}
            if not found:
                why = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
                raise ConfigError(f"{source}: no OpenPGP public key could be imported "
                                  f"({why[0]})", key="signedBy")
            fingerprints |= found
        return cls(home, frozenset(fingerprints))

    async def verify(self, blob: bytes) -> tuple[bytes, str]:
        """Verify the simple-signing ``blob``; returns (signed content, primary key
        fingerprint). Raises ``ValueError`` saying why the signature is not accepted."""
        message = openpgp_message(blob)
        sig_file = self.home / f"sig-{os.urandom(8).hex()}"
        try:
            sig_file.write_bytes(message)
        except OSError as exc:  # our temporary directory: not the signature's fault
            raise StorageError(f"cannot write {sig_file}: {exc.strerror}") from None
        try:
            rc, content, status = await self._run_gpgv(sig_file)
        finally:
            sig_file.unlink(missing_ok=True)
        fingerprint = _check_status(status, rc)
        if fingerprint not in self.fingerprints:
            raise ValueError(f"signature by key {fingerprint} is not accepted")
        return content, fingerprint

    async def _run_gpgv(self, sig_file: Path) -> tuple[int, bytes, bytes]:
        read_end, write_end = os.pipe()
        os.set_blocking(read_end, False)
        cmd = [self._gpgv, "--homedir", str(self.home), "--keyring", str(self._keyring),
               "--status-fd", str(write_end), "--output", "-", "--", str(sig_file)]
        try:
            proc = await anyio.open_process(cmd, stdin=subprocess.DEVNULL, env=_env(),
                                            pass_fds=(write_end,))
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)
        overflow: list[str] = []

        def too_large(what: str) -> None:
            overflow.append(what)
            proc.kill()  # stop producing; the readers then see end of stream

        try:
            out, err, status = bytearray(), bytearray(), bytearray()
            with anyio.fail_after(_TIMEOUT):
                async with anyio.create_task_group() as tg:
                    assert proc.stdout is not None and proc.stderr is not None
                    tg.start_soon(_collect, proc.stdout, out, MAX_CONTENT,
                                  lambda: too_large("signed content"))
                    tg.start_soon(_collect, proc.stderr, err, _MAX_STATUS, None)
                    tg.start_soon(_collect_fd, read_end, status,
                                  lambda: too_large("gpgv status output"))
                rc = await proc.wait()
        except TimeoutError:
            raise ValueError("gpgv did not finish in time") from None
        finally:
            os.close(read_end)
            if proc.returncode is None:
                proc.kill()
            with anyio.CancelScope(shield=True):
                await proc.aclose()
        if overflow:
            raise ValueError(f"{overflow[0]} larger than allowed")
        return rc, bytes(out), bytes(status)


async def _collect(stream: anyio.abc.ByteReceiveStream, into: bytearray, limit: int,
                   overflow: Callable[[], None] | None) -> None:
    """Read ``stream`` to its end; past ``limit`` call ``overflow`` (if any) and drop."""
    async for chunk in stream:
        if len(into) + len(chunk) > limit:
            if overflow is not None:
                overflow()
                overflow = None
            continue
        into += chunk


async def _collect_fd(fd: int, into: bytearray, overflow: Callable[[], None]) -> None:
    while True:
        await anyio.wait_readable(fd)
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            continue
        if not chunk:
            return
        if len(into) + len(chunk) > _MAX_STATUS:
            overflow()
            return
        into += chunk


def _check_status(status: bytes, rc: int) -> str:
    """The primary fingerprint of the one good signature ``status`` reports, or ValueError."""
    lines = [line[len(b"[GNUPG:] "):].decode(errors="replace").split()
             for line in status.splitlines() if line.startswith(b"[GNUPG:] ")]
    keywords = [fields[0] for fields in lines if fields]
    if "NO_PUBKEY" in keywords and "GOODSIG" not in keywords:
        raise ValueError(f"signature by key {_unknown_key(lines)} is not accepted")
    bad = sorted(set(keywords) & _BAD_STATUS)
    if bad:
        raise ValueError(f"invalid OpenPGP signature ({', '.join(bad)})")
    counts = {k: keywords.count(k) for k in ("NEWSIG", "GOODSIG", "VALIDSIG")}
    if counts["GOODSIG"] != 1 or counts["VALIDSIG"] != 1 or counts["NEWSIG"] > 1:
        raise ValueError(f"expected exactly one good OpenPGP signature, gpgv reported {counts}")
    if rc != 0:
        raise ValueError(f"gpgv exited with status {rc}")
    validsig = next(fields for fields in lines if fields and fields[0] == "VALIDSIG")
    # VALIDSIG <fpr> <date> <ts> <expire> <version> <reserved> <pk-algo> <hash-algo> <class>
    # [<primary-fpr>]: the primary key is what a policy names, the first may be a subkey.
    primary = validsig[10] if len(validsig) > 10 else validsig[1] if len(validsig) > 1 else ""
    if not primary:
        raise ValueError("gpgv reported no signing key")
    return primary.upper()


def _unknown_key(lines: list[list[str]]) -> str:
    """The issuer of a signature by a key the keyring lacks: ERRSIG's fingerprint (gpg
    2.2.7+, field 8) when given, else NO_PUBKEY's long key id."""
    for fields in lines:
        if fields[:1] == ["ERRSIG"] and len(fields) > 7 and fields[7] not in ("", "-"):
            return fields[7].upper()
    for fields in lines:
        if fields[:1] == ["NO_PUBKEY"] and len(fields) > 1:
            return fields[1].upper()
    return "(unknown)"
