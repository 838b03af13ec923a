"""Certificates for the harness (TLS registries, the token signer, the benchmark).

`self_signed()`: one certificate that is its own CA. `ca_and_leaf()`: a CA and a server
certificate it signed, as a real deployment has (what both skopeo and mirrord must verify in
the benchmark). Nothing here touches the network; keys are generated in memory with
`cryptography`.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CertPair", "ServerTLS", "ca_and_leaf", "self_signed"]


@dataclass(frozen=True)
class CertPair:
    """A self-signed certificate and its private key (PEM), written to disk."""

    cert_path: Path
    key_path: Path
    cert_pem: bytes
    key_pem: bytes
    cert_der: bytes
    private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def self_signed(
    directory: Path,
    name: str,
    *,
    common_name: str = "mirrord-harness",
    ip_sans: tuple[str, ...] = ("127.0.0.1",),
    dns_sans: tuple[str, ...] = ("localhost",),
    rsa_bits: int | None = None,
    days: int = 2,
) -> CertPair:
    """Create `<name>.crt`/`<name>.key` in `directory`.

    EC P-256 by default (fast); pass `rsa_bits` for an RSA key (the token signer needs RS256).
    The certificate is its own CA (basicConstraints CA:TRUE) so it can sit in a root bundle.
    """
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    if rsa_bits:
        key = rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
    else:
        key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_sans]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_sans]
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=bool(rsa_bits),
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(key, hashes.SHA256())
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path = directory / f"{name}.crt"
    key_path = directory / f"{name}.key"
    cert_path.write_bytes(cert_pem)
    key_path.write_bytes(key_pem)
    key_path.chmod(0o600)
    return CertPair(
        cert_path=cert_path,
        key_path=key_path,
        cert_pem=cert_pem,
        key_pem=key_pem,
        cert_der=cert.public_bytes(serialization.Encoding.DER),
        private_key=key,
    )


@dataclass(frozen=True)
class ServerTLS:
    """A CA and a server certificate it issued.

    `ca_path`: the CA to trust (`ca.crt`); `cert_path`/`key_path`: what the server presents;
    `certs_dir`: a directory holding only a copy of the CA as `ca.crt`, the layout
    containers/image reads (`skopeo --src-cert-dir`/`--dest-cert-dir`, certs.d): a key
    without its `.cert` there would be refused, so the server's files live elsewhere."""

    ca_path: Path
    cert_path: Path
    key_path: Path
    certs_dir: Path


def ca_and_leaf(
    directory: Path,
    *,
    ip_sans: tuple[str, ...] = ("127.0.0.1",),
    dns_sans: tuple[str, ...] = ("localhost",),
    days: int = 2,
) -> ServerTLS:
    """A CA (`ca.crt`) and a leaf for `ip_sans`/`dns_sans` (`server.crt`/`server.key`,
    basicConstraints CA:FALSE, extendedKeyUsage serverAuth) in `directory`.

    The leaf names addresses, not ports, so it also verifies through a TCP proxy on
    another port of the same address (the benchmark's WAN proxy)."""
    ca = self_signed(directory, "ca", common_name="mirrord-harness CA", ip_sans=(),
                     dns_sans=(), days=days)
    issuer = x509.load_pem_x509_certificate(ca.cert_pem).subject
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_sans]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_sans]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mirrord-harness")]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(ca.private_key, hashes.SHA256())
    )
    cert_path, key_path = directory / "server.crt", directory / "server.key"
    # The chain (leaf, then CA): what a server presents when its CA is an intermediate.
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + ca.cert_pem)
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    ca.key_path.unlink()  # nothing signs with it again
    certs_dir = directory / "certs.d"
    certs_dir.mkdir(exist_ok=True)
    (certs_dir / "ca.crt").write_bytes(ca.cert_pem)
    return ServerTLS(ca.cert_path, cert_path, key_path, certs_dir)
