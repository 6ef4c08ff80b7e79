"""A real Squid that intercepts TLS (``ssl_bump bump all``) on its plain ports, for the tests of
``TLSIntercepted``.

It is :class:`~tests.support.squid.SquidProxy` with its two plain listeners (``http_url`` and
``http_auth_url``, Basic auth) turned into ``ssl-bump`` ports: every CONNECT is answered 200,
then Squid terminates the client's TLS itself with a leaf it generates for the requested name
(``security_file_certgen``), signed by a separate **interception CA** (:func:`interception_ca`),
and opens its own TLS to the origin, which it verifies against the origin CA
(``tls_outgoing_options cafile=``). The two ``https_port`` listeners stay as they are (no
interception). Names resolve from Squid's ``hosts_file`` only, as in the base class.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trustme
from tests.support.squid import SquidProxy

SECURITY_FILE_CERTGEN = "/usr/lib/squid/security_file_certgen"


@dataclass(frozen=True)
class InterceptionCA:
    """The proxy's interception CA as PEM files: ``cert`` (the CA certificate, what an operator
    puts in ``proxy.ca_file``) and ``cert_and_key`` (what Squid signs with)."""

    cert: Path
    cert_and_key: Path


def interception_ca(directory: str | Path) -> InterceptionCA:
    """Make a fresh CA, apart from the origin, proxy and wrong CAs of ``tests.support.certs``."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="egress tests", organization_unit_name="interception CA")
    cert = out / "interception-ca.pem"
    both = out / "interception-ca-and-key.pem"
    ca.cert_pem.write_to_path(str(cert))
    both.write_bytes(ca.cert_pem.bytes() + ca.private_key_pem.bytes())
    cert.chmod(0o644)
    both.chmod(0o644)  # throwaway; Squid copies it into its own directory
    return InterceptionCA(cert=cert, cert_and_key=both)


class BumpingSquid(SquidProxy):
    """A :class:`SquidProxy` whose plain ports (``http_url``, ``http_auth_url``) bump every
    CONNECT (see the module)."""

    def __init__(self, *, bump_ca: InterceptionCA, origin_ca: str | Path, **kwargs: Any) -> None:
        self._bump_ca = bump_ca
        self._origin_ca = Path(origin_ca)
        super().__init__(**kwargs)

    def _render(self) -> None:
        super()._render()
        run_dir = self.workdir
        shutil.copyfile(self._bump_ca.cert_and_key, run_dir / "bump-ca.pem")
        shutil.copyfile(self._origin_ca, run_dir / "origin-ca.pem")
        db = run_dir / "ssl_db"
        subprocess.run(
            [SECURITY_FILE_CERTGEN, "-c", "-s", str(db), "-M", "4MB"],
            check=True,
            capture_output=True,
            timeout=30,
        )
        text = self.conf_path.read_text()
        for port, name in ((self.http_port, "plain"), (self.http_auth_port, "plain_auth")):
            plain = f"http_port  127.0.0.1:{port} name={name}\n"
            if plain not in text:
                raise AssertionError(f"the base Squid config changed: no {name} http_port line")
            text = text.replace(
                plain,
                f"http_port  127.0.0.1:{port} name={name} ssl-bump "
                "generate-host-certificates=on dynamic_cert_mem_cache_size=4MB "
                f"tls-cert={run_dir}/bump-ca.pem\n",
            )
        text += (
            "\n# TLS interception on the plain ports (tests/support/squid_bump.py)\n"
            f"sslcrtd_program {SECURITY_FILE_CERTGEN} -s {db} -M 4MB\n"
            "sslcrtd_children 2 startup=1 idle=1\n"
            "acl step1 at_step SslBump1\n"
            "ssl_bump peek step1\n"
            "ssl_bump bump all\n"
            f"tls_outgoing_options cafile={run_dir}/origin-ca.pem\n"
        )
        self.conf_path.write_text(text)
        (run_dir / "bump-ca.pem").chmod(0o600)
        if os.geteuid() == 0:
            proxy = pwd.getpwnam("proxy")
            for path in (run_dir / "bump-ca.pem", run_dir / "origin-ca.pem", db, *db.rglob("*")):
                os.chown(path, proxy.pw_uid, proxy.pw_gid)
