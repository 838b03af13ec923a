"""Self-signed certificates for the harness (TLS registries, the token signer).

Nothing here touches the network; keys are generated in memory with `cryptography`.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

__all__ = ["CertPair", "self_signed"]


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
