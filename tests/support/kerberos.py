"""A real MIT KDC and a Squid that asks for Kerberos (Negotiate) on loopback, for the tests.

:class:`KDC` makes a realm ``EGRESS.TEST`` in a private temp dir (``kdb5_util``,
``kadmin.local``), with the client ``alice`` (a password and a keytab) and the proxy's service
principal ``HTTP/localhost``, and runs ``krb5kdc -n`` on a free loopback port, stopped by PID.
Every Kerberos process gets the realm's own ``KRB5_CONFIG`` (the system's names a real realm):
:attr:`KDC.env`. :class:`NegotiateSquid` is the test Squid (:mod:`tests.support.squid`) whose
auth ports also offer Negotiate through ``negotiate_kerberos_auth`` with the proxy's keytab;
the proxy is reached as ``localhost``, the host its SPN names.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.support.ports import LOOPBACK, free_port, port_accepts, wait_until
from tests.support.squid import SquidProxy

REALM = "EGRESS.TEST"
CLIENT = "alice"
CLIENT_PRINCIPAL = f"{CLIENT}@{REALM}"
CLIENT_PASSWORD = "alice-secret"
PROXY_HOST = "localhost"
SERVICE = f"HTTP/{PROXY_HOST}"
KRB5KDC = "/usr/sbin/krb5kdc"
KDB5_UTIL = "/usr/sbin/kdb5_util"
KADMIN_LOCAL = "/usr/sbin/kadmin.local"
KINIT = "/usr/bin/kinit"
NEGOTIATE_HELPER = "/usr/lib/squid/negotiate_kerberos_auth"

_KRB5_CONF = """\
[libdefaults]
 default_realm = {realm}
 dns_lookup_kdc = false
 dns_lookup_realm = false
 dns_canonicalize_hostname = false
 rdns = false
 udp_preference_limit = 1
[realms]
 {realm} = {{
  kdc = {host}:{port}
 }}
[domain_realm]
 localhost = {realm}
"""

_KDC_CONF = """\
[kdcdefaults]
 kdc_listen = {host}:{port}
 kdc_tcp_listen = {host}:{port}
[realms]
 {realm} = {{
  database_name = {dir}/principal
  key_stash_file = {dir}/stash
  acl_file = {dir}/kadm5.acl
  max_life = 10h
  max_renewable_life = 0
 }}
[logging]
 kdc = FILE:{dir}/kdc.log
"""


class KDC:
    """An MIT KDC for the realm ``EGRESS.TEST`` on a loopback port, stopped by PID."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="egress-kdc-"))
        self.port = free_port()
        self.conf = self.dir / "krb5.conf"
        self.client_keytab = self.dir / "alice.keytab"
        self.proxy_keytab = self.dir / "proxy.keytab"
        self.env: dict[str, str] = {
            "KRB5_CONFIG": str(self.conf),
            "KRB5_KDC_PROFILE": str(self.dir / "kdc.conf"),
        }
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def _run(self, *argv: str, stdin: str | None = None) -> str:
        out = subprocess.run(
            argv,
            input=stdin,
            capture_output=True,
            text=True,
            env={**os.environ, **self.env},
            timeout=30,
            check=False,
        )
        if out.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed ({out.returncode}): {out.stderr or out.stdout}")
        return out.stdout

    def kadmin(self, query: str) -> str:
        """One ``kadmin.local`` query against this realm's database."""
        return self._run(KADMIN_LOCAL, "-r", REALM, "-q", query)

    def start(self) -> KDC:
        fmt = {"realm": REALM, "host": LOOPBACK, "port": self.port, "dir": self.dir}
        self.conf.write_text(_KRB5_CONF.format(**fmt))
        # Squid's helper runs as `proxy` and reads krb5.conf (the database stays private)
        self.dir.chmod(0o755)
        self.conf.chmod(0o644)
        (self.dir / "kdc.conf").write_text(_KDC_CONF.format(**fmt))
        (self.dir / "kadm5.acl").write_text("")
        self._run(KDB5_UTIL, "create", "-s", "-r", REALM, "-P", secrets.token_hex(16))
        self.kadmin(f"addprinc -pw {CLIENT_PASSWORD} {CLIENT}")
        self.kadmin(f"ktadd -k {self.client_keytab} -norandkey {CLIENT}")
        self.kadmin(f"addprinc -randkey {SERVICE}")
        self.kadmin(f"ktadd -k {self.proxy_keytab} {SERVICE}")
        with (self.dir / "krb5kdc.out").open("ab") as out:
            self._proc = subprocess.Popen(
                [KRB5KDC, "-n", "-r", REALM],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                env={**os.environ, **self.env},
            )
        wait_until(
            lambda: port_accepts(self.port),
            timeout=15,
            what=f"krb5kdc on port {self.port}",
            alive=lambda: self._proc is not None and self._proc.poll() is None,
        )
        return self

    def kinit(self, ccache: Path, *, lifetime: str | None = None) -> None:
        """A ticket for alice from her keytab into the file cache ``ccache``."""
        argv = [KINIT, "-c", f"FILE:{ccache}", "-k", "-t", str(self.client_keytab)]
        if lifetime is not None:
            argv += ["-l", lifetime]
        self._run(*argv, CLIENT)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> KDC:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class NegotiateSquid(SquidProxy):
    """The test Squid whose auth ports (``http_auth_port``, ``https_auth_port``) ask for
    Negotiate (Kerberos, checked with the proxy's keytab) before Basic."""

    def __init__(self, kdc: KDC, **kwargs: Any) -> None:
        self.kdc = kdc
        super().__init__(**kwargs)
        self.env = {**os.environ, **kdc.env}  # the helper inherits Squid's environment

    @property
    def negotiate_url(self) -> str:
        """The plain-HTTP auth port by the name the proxy's SPN names."""
        return f"http://{PROXY_HOST}:{self.http_auth_port}"

    def _render(self) -> None:
        keytab = self.workdir / "proxy.keytab"
        rcache = self.workdir / "rcache"
        shutil.copyfile(self.kdc.proxy_keytab, keytab)
        rcache.mkdir(exist_ok=True)
        super()._render()
        conf = self.conf_path.read_text()
        negotiate = (
            f"auth_param negotiate program {NEGOTIATE_HELPER} -k {keytab} "
            f"-s {SERVICE}@{REALM} -c {rcache}\n"
            "auth_param negotiate children 4 startup=1 idle=1\n"
        )
        conf = conf.replace("auth_param basic program", negotiate + "auth_param basic program", 1)
        self.conf_path.write_text(conf)
        keytab.chmod(0o600)
        rcache.chmod(0o700)
        if os.geteuid() == 0:
            proxy = pwd.getpwnam("proxy")
            for path in (self.conf_path, keytab, rcache):
                os.chown(path, proxy.pw_uid, proxy.pw_gid)
