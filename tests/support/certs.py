"""Test certificate authorities made with trustme, written as PEM files.

Two independent CAs, so a test can prove each TLS hop is verified against the right one:

* the **origin CA** signs the fake SaaS origin's leaf (every fake name plus localhost,
  127.0.0.1 and ::1); PostgreSQL serves the same leaf;
* the **proxy CA** signs Squid's ``https_port`` leaf (127.0.0.1, localhost, ::1, proxy.test).

A third **wrong CA** signed nothing: trusting only it must make every handshake fail.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme
from tests.support.names import FAKE_NAMES, LOOPBACK_NAMES

PROXY_NAMES: tuple[str, ...] = ("127.0.0.1", "localhost", "::1", "proxy.test")


@dataclass(frozen=True)
class CertBundle:
    """Paths of the PEM files written by :func:`generate_certs` (all world-readable)."""

    directory: Path
    origin_ca: Path
    origin_cert: Path
    origin_key: Path
    proxy_ca: Path
    proxy_cert: Path
    proxy_key: Path
    wrong_ca: Path
    #: proxy CA + origin CA in one file (for ``SSL_CERT_FILE`` with an ``https://`` proxy)
    ca_bundle: Path

    def origin_context(self) -> ssl.SSLContext:
        """Client context trusting only the origin CA."""
        return client_context(self.origin_ca)

    def proxy_context(self) -> ssl.SSLContext:
        """Client context trusting only the proxy CA."""
        return client_context(self.proxy_ca)

    def wrong_context(self) -> ssl.SSLContext:
        """Client context trusting only a CA that signed nothing."""
        return client_context(self.wrong_ca)


def client_context(cafile: str | Path) -> ssl.SSLContext:
    """A default client ``SSLContext`` (hostname checks on) trusting only ``cafile``."""
    return ssl.create_default_context(cafile=str(cafile))


def server_context(cert_file: str | Path, key_file: str | Path) -> ssl.SSLContext:
    """A server ``SSLContext`` serving ``cert_file``/``key_file``."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert_file), str(key_file))
    return ctx


def generate_certs(directory: str | Path) -> CertBundle:
    """Create the three CAs and two leaves and write them into ``directory``.

    File names: ``origin-ca.pem``, ``origin-cert.pem``, ``origin-key.pem``, ``proxy-ca.pem``,
    ``proxy-cert.pem``, ``proxy-key.pem``, ``wrong-ca.pem`` and ``ca-bundle.pem``. Keys are
    written 0644 on purpose: they are throwaway, and Squid (user ``proxy``) and PostgreSQL (user
    ``postgres``) copy what they need from here.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    origin_ca = trustme.CA(organization_name="egress tests", organization_unit_name="origin CA")
    proxy_ca = trustme.CA(organization_name="egress tests", organization_unit_name="proxy CA")
    wrong_ca = trustme.CA(organization_name="egress tests", organization_unit_name="wrong CA")
    origin_leaf = origin_ca.issue_cert(*FAKE_NAMES, *LOOPBACK_NAMES, common_name=FAKE_NAMES[0])
    proxy_leaf = proxy_ca.issue_cert(*PROXY_NAMES, common_name="proxy.test")

    bundle = CertBundle(
        directory=out,
        origin_ca=out / "origin-ca.pem",
        origin_cert=out / "origin-cert.pem",
        origin_key=out / "origin-key.pem",
        proxy_ca=out / "proxy-ca.pem",
        proxy_cert=out / "proxy-cert.pem",
        proxy_key=out / "proxy-key.pem",
        wrong_ca=out / "wrong-ca.pem",
        ca_bundle=out / "ca-bundle.pem",
    )
    origin_ca.cert_pem.write_to_path(str(bundle.origin_ca))
    proxy_ca.cert_pem.write_to_path(str(bundle.proxy_ca))
    wrong_ca.cert_pem.write_to_path(str(bundle.wrong_ca))
    _write_chain(bundle.origin_cert, origin_leaf)
    origin_leaf.private_key_pem.write_to_path(str(bundle.origin_key))
    _write_chain(bundle.proxy_cert, proxy_leaf)
    proxy_leaf.private_key_pem.write_to_path(str(bundle.proxy_key))
    bundle.ca_bundle.write_bytes(proxy_ca.cert_pem.bytes() + origin_ca.cert_pem.bytes())

    out.chmod(0o755)
    for path in out.iterdir():
        path.chmod(0o644)
    return bundle


def _write_chain(path: Path, leaf: trustme.LeafCert) -> None:
    path.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
