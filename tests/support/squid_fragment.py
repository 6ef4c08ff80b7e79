"""A real Squid around a rendered ``egress render squid`` fragment, on a free loopback port.

Squid resolves every name from its own ``hosts_file`` (each of ``names`` -> 127.0.0.1), with
``dns_nameservers 127.0.0.1`` and ``http_access deny !to_loopback`` before the fragment as a
safety belt, so nothing leaves the machine. The fake origin listens on free ports, not on 443
and 80, so the config adds those ports to the fragment's own port ACLs before it (Squid merges
ACL lines of one name): port 443 of the catalog stands for the origin's TLS port, port 80 for
its plain-HTTP port. Stopped by PID.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from tests.support.origin import FakeOrigin
from tests.support.ports import LOOPBACK, free_ports, port_accepts, wait_until
from tests.support.squid import SQUID, AccessLogLine, parse_access_log_line

_CONF = """\
# minimal squid.conf around the egress fragment (test)
visible_hostname egress-render-test
pid_filename {run}/squid.pid
logformat egress %ts.%03tu %>lp %Ss/%03>Hs %rm %ru %un %>a %<st %Sh/%<a
access_log stdio:{run}/access.log egress
cache_log {run}/cache.log
cache_store_log none
coredump_dir {run}
{effective_user}
cache deny all
cache_mem 8 MB
hosts_file {run}/hosts
dns_nameservers 127.0.0.1
dns_timeout 1 seconds
dns_retransmit_interval 1 seconds
negative_dns_ttl 1 seconds
pinger_enable off
tcp_outgoing_address 127.0.0.1
udp_outgoing_address 127.0.0.1
udp_incoming_address 127.0.0.1
shutdown_lifetime 0 seconds
http_port 127.0.0.1:{port}

acl localnet src 127.0.0.0/8 ::1
acl to_loopback dst 127.0.0.0/8 ::1
http_access deny !localnet
# safety belt: never forward anywhere but loopback
http_access deny !to_loopback

# the fake origin's ports stand for the catalog's 443 and 80
acl egress_SSL_ports port {origin_https}
acl egress_port_443 port {origin_https}
acl egress_port_80 port {origin_http}
# a CONNECT port that belongs to no destination listed here (as 5439 does to Redshift)
acl egress_SSL_ports port {spare}

{fragment}
# a broad allow after the block, as in many corporate configs: the fragment must still deny
http_access allow localnet
http_access deny all
"""


class FragmentSquid:
    """Squid on a free loopback port with the rendered fragment; stopped by PID."""

    def __init__(
        self,
        fragment: str,
        origin: FakeOrigin,
        settings_name: str = "",
        *,
        names: Sequence[str] = (),
    ) -> None:
        self.settings_name = settings_name
        self.port, self.spare_port = free_ports(2)
        self.name = f"egressrender{os.getpid()}p{self.port}"
        self.workdir = Path(tempfile.mkdtemp(prefix="egress-render-squid-"))
        self.conf = self.workdir / "squid.conf"
        self.access_log = self.workdir / "access.log"
        self._proc: subprocess.Popen[bytes] | None = None
        as_root = os.geteuid() == 0
        (self.workdir / "hosts").write_text(
            "127.0.0.1 localhost\n" + "".join(f"127.0.0.1 {n}\n" for n in names)
        )
        self.conf.write_text(
            _CONF.format(
                run=self.workdir,
                effective_user="cache_effective_user proxy" if as_root else "",
                port=self.port,
                origin_https=origin.https_port,
                origin_http=origin.http_port,
                spare=self.spare_port,
                fragment=fragment,
            )
        )
        self.workdir.chmod(0o755)
        if as_root:
            proxy = pwd.getpwnam("proxy")
            for path in (self.workdir, *self.workdir.iterdir()):
                os.chown(path, proxy.pw_uid, proxy.pw_gid)

    def parse(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [SQUID, "-n", self.name, "-k", "parse", "-f", str(self.conf)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    def start(self) -> FragmentSquid:
        parsed = self.parse()
        assert parsed.returncode == 0, parsed.stderr[-3000:]
        self._proc = subprocess.Popen(
            [SQUID, "-n", self.name, "-N", "-f", str(self.conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=self.workdir,
        )
        wait_until(
            lambda: port_accepts(self.port),
            timeout=15,
            what=f"squid on {LOOPBACK}:{self.port}",
            alive=lambda: self._proc is not None and self._proc.poll() is None,
        )
        return self

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def log_lines(self) -> list[AccessLogLine]:
        if not self.access_log.exists():
            return []
        lines = [parse_access_log_line(raw) for raw in self.access_log.read_text().splitlines()]
        return [line for line in lines if not line.is_probe]

    def wait_for_log(self, url_part: str) -> AccessLogLine:
        found: list[AccessLogLine] = []

        def seen() -> bool:
            found[:] = [line for line in self.log_lines() if url_part in line.url]
            return bool(found)

        wait_until(seen, timeout=5, what=f"access.log line for {url_part}")
        return found[-1]
