"""The ``egress`` command line. Exit codes are :class:`Exit`; errors are one sentence and a hint.

Every line written for people goes through :class:`_Console`: known passwords scrubbed, control
characters escaped (a value cannot forge an ``error:`` line or move the cursor). ``--json`` output
is JSON, escaped by ``json`` itself; a rendered artifact is written as the renderer made it.
A traceback is shown only with ``--debug``, and scrubbed the same way.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import math
import os
import re
import shutil
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterable, Sequence
from enum import IntEnum
from typing import TYPE_CHECKING, Any, TextIO

from egress.errors import ConfigError, EgressError, EgressTransportError, Problem, UsageError
from egress.redact import mask_url, printable, scrub, shown, split_userinfo
from egress.render import KINDS, RenderOptions, renderer
from egress.router import Decision, routing_notes
from egress.settings import Settings, load_environment, load_helm_values, load_yaml
from egress.warehouses import WAREHOUSES

if TYPE_CHECKING:
    from egress.check import CheckResult, Probe

__all__ = ["Exit", "UsageError", "main"]

KUBECTL_ARGS = ["get", "svc", "kubernetes", "-n", "default", "-o", "jsonpath={.spec.clusterIP}"]

MAX_TIMEOUT = 3600.0
"""The longest ``cluster-ip --timeout`` (seconds); longer is a typo, not a wish."""

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "GRPC_PROXY")


class Exit(IntEnum):
    """Every exit code of the command line."""

    OK = 0
    FAILED = 1  # a check failed, or a value could not be found
    USAGE = 2  # the command line itself is wrong
    INVALID = 3  # the settings are invalid
    INTERNAL = 70  # a bug in egress (EX_SOFTWARE); --debug shows where
    INTERRUPTED = 130  # Ctrl-C


# -- output --------------------------------------------------------------------------------------


class _Console:
    """Where every line for people goes: secrets scrubbed, control characters escaped."""

    def __init__(self, stdout: TextIO, stderr: TextIO) -> None:
        self.stdout = stdout
        self.stderr = stderr
        self.secrets: list[str] = []

    def keep_secret(self, value: str | None) -> None:
        """Never print ``value``, in any line, message or traceback."""
        if value and value not in self.secrets:
            self.secrets.append(value)
            encoded = json.dumps(value)[1:-1]  # how it would look inside a JSON string
            if encoded != value:
                self.secrets.append(encoded)

    def keep_url_secrets(self, texts: Iterable[str]) -> None:
        """The password of every URL among ``texts`` (arguments, proxy variables)."""
        for text in texts:
            _, _, password, _ = split_userinfo(text)
            self.keep_secret(password)

    def clean(self, text: str) -> str:
        """``text`` as one line fit for a terminal: secrets masked, line breaks and every other
        control character escaped."""
        return printable(scrub(text, self.secrets))

    def out(self, text: str = "") -> None:
        self.stdout.write(self.clean(text) + "\n")

    def err(self, text: str) -> None:
        self.stderr.write(self.clean(text) + "\n")

    def json(self, payload: object, indent: int | None = None) -> None:
        """One JSON document on stdout (json escapes control characters itself)."""
        self.stdout.write(scrub(json.dumps(payload, indent=indent), self.secrets) + "\n")

    def data(self, text: str) -> None:
        """An artifact, exactly as rendered (``render env --format secret`` holds the password)."""
        self.stdout.write(text if text.endswith("\n") else text + "\n")

    def problems(self, kind: str, problems: Sequence[Problem], to_stdout: bool = False) -> None:
        write = self.out if to_stdout else self.err
        for pr in problems:
            write(f"{kind}: {pr.field}: {pr.message}" if pr.field else f"{kind}: {pr.message}")
            if pr.hint:
                write(f"  hint: {pr.hint}")

    def fail(self, message: str, hint: str = "") -> None:
        self.err(f"egress: error: {message}")
        if hint and hint not in message:  # a message that already ends with its fix says it once
            self.err(f"  hint: {hint}")

    def traceback(self, exc: BaseException) -> None:
        """The traceback (``--debug``), causes first as Python prints it, every known secret
        masked and each exception's message kept on its line (a message cannot forge lines)."""
        chain: list[tuple[BaseException, str]] = []
        link: BaseException | None = exc
        why = ""
        while link is not None and all(link is not seen for seen, _ in chain):
            chain.append((link, why))
            if link.__cause__ is not None:
                link, why = link.__cause__, _CAUSE
            elif link.__context__ is not None and not link.__suppress_context__:
                link, why = link.__context__, _CONTEXT
            else:
                link = None
        for link, why in reversed(chain):
            self.err("Traceback (most recent call last):")
            for line in "".join(traceback.format_tb(link.__traceback__)).splitlines():
                self.err(line)
            for part in traceback.format_exception_only(type(link), link):
                self.err(part.rstrip("\n"))
            if why:  # how this one led to the next (newer) one
                self.stderr.write(f"\n{why}\n\n")


_CAUSE = "The above exception was the direct cause of the following exception:"
_CONTEXT = "During handling of the above exception, another exception occurred:"


# -- argument types: each refuses a bad value with a sentence naming the fix (exit 2) ------------

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_LABEL_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")


def _namespace(text: str) -> str:
    """A Kubernetes namespace: a DNS-1123 label (``carto``, ``team-a``)."""
    if len(text) <= 63 and _DNS_LABEL.fullmatch(text):
        return text
    raise argparse.ArgumentTypeError(
        f"{shown(text)} is not a Kubernetes namespace: use at most 63 lower-case letters, digits "
        "and '-', starting and ending with a letter or digit (e.g. carto)"
    )


def _dns_subdomain(text: str) -> bool:
    return len(text) <= 253 and all(
        len(label) <= 63 and _DNS_LABEL.fullmatch(label) for label in text.split(".")
    )


def _label(text: str) -> tuple[str, str]:
    """A ``--pod-selector`` KEY=VALUE: a Kubernetes label key (``[prefix/]name``) and value."""
    example = "e.g. --pod-selector app.kubernetes.io/part-of=carto"
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"{shown(text)} is not KEY=VALUE ({example})")
    prefix, slash, name = key.rpartition("/")
    if (slash and not _dns_subdomain(prefix)) or not (
        len(name) <= 63 and _LABEL_NAME.fullmatch(name)
    ):
        raise argparse.ArgumentTypeError(
            f"{shown(key)} is not a Kubernetes label key: an optional DNS prefix and '/', then at "
            "most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit "
            f"({example})"
        )
    if value and not (len(value) <= 63 and _LABEL_NAME.fullmatch(value)):
        raise argparse.ArgumentTypeError(
            f"{shown(value)} is not a Kubernetes label value: at most 63 letters, digits, '-', "
            f"'_' or '.', starting and ending with a letter or digit ({example})"
        )
    return key, value


def _cidr(text: str) -> str:
    try:
        return str(ipaddress.ip_network(text.strip(), strict=False))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{shown(text)} is not a CIDR (write e.g. 10.0.5.10/32)"
        ) from None


def _warehouse_cidr(text: str) -> tuple[str, str]:
    kind, sep, cidr = text.partition("=")
    kind = kind.strip().lower()
    if not sep or kind not in WAREHOUSES:
        raise argparse.ArgumentTypeError(
            f"{shown(text)} is not KIND=CIDR with a known warehouse (kinds: "
            f"{', '.join(WAREHOUSES)}; e.g. postgres=10.20.0.0/16)"
        )
    try:
        return kind, str(ipaddress.ip_network(cidr.strip(), strict=False))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{shown(text)} has {shown(cidr)}, which is not a CIDR (e.g. postgres=10.20.0.0/16)"
        ) from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if math.isfinite(value) and 0 < value <= MAX_TIMEOUT:
        return value
    raise argparse.ArgumentTypeError(
        f"{shown(text)} is not a number of seconds: give a positive number up to "
        f"{MAX_TIMEOUT:g} (e.g. 20)"
    )


# -- the parser ----------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    secrets: Sequence[str] = ()
    """Passwords in the command line being parsed (an unknown flag's value is echoed)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        said = printable(scrub(message, _Parser.secrets))
        sys.stderr.write(f"egress: error: {said}\n  hint: run '{self.prog} --help'\n")
        raise SystemExit(Exit.USAGE)


def _add_common(p: argparse.ArgumentParser, *, source: bool = True) -> None:
    """--debug (also accepted after the command) and, where settings are read, their source."""
    p.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks on errors"
    )
    p.set_defaults(parser=p)  # the subcommand's own parser reports what it does not take
    if source:
        group = p.add_mutually_exclusive_group()
        group.add_argument("--config", metavar="F", help="egress.yaml to load")
        group.add_argument(
            "--helm-values", metavar="F", help="the seed chart's customizations.yaml to load"
        )


def _add_features(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--features",
        metavar="LIST",
        help="comma-separated feature groups in scope, instead of the settings' features",
    )


def _add_namespace(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--namespace", type=_namespace, metavar="NS", help="Kubernetes namespace for the objects"
    )


def _env_options(args: argparse.Namespace) -> RenderOptions:
    if args.namespace is not None and args.format in (None, "dotenv"):
        args.parser.error("--namespace applies only to --format configmap or --format secret")
    return RenderOptions(format=args.format, namespace=args.namespace)


def _networkpolicy_options(args: argparse.Namespace) -> RenderOptions:
    keys = [key for key, _ in args.pod_selector]
    twice = sorted({key for key in keys if keys.count(key) > 1})
    if twice:
        args.parser.error(
            f"--pod-selector names {', '.join(map(shown, twice))} more than once; a pod has one "
            "value per label key"
        )
    return RenderOptions(
        proxy_cidr=args.proxy_cidr,
        warehouse_cidrs=tuple(args.warehouse_cidr),
        namespace=args.namespace,
        pod_labels=tuple(args.pod_selector),
        in_cluster=args.in_cluster,
    )


def _squid_options(args: argparse.Namespace) -> RenderOptions:
    return RenderOptions(features=_features(args.features))


def _no_options(args: argparse.Namespace) -> RenderOptions:
    return RenderOptions()


def _add_render_kinds(render: argparse.ArgumentParser) -> None:
    """One subcommand per artifact, each with only the flags its renderer reads."""
    kinds = render.add_subparsers(dest="kind", metavar="KIND", parser_class=_Parser)
    kinds.required = True
    made: dict[str, argparse.ArgumentParser] = {}

    def kind(name: str, help_: str, options: Callable[[argparse.Namespace], RenderOptions]) -> None:
        p = kinds.add_parser(name, help=help_, description=help_)
        _add_common(p)
        p.set_defaults(func=cmd_render, options=options)
        made[name] = p

    kind("helm", "values for the platform's Helm chart (customizations.yaml fragment)", _no_options)
    kind("env", "the proxy environment: an env file, a ConfigMap or a Secret", _env_options)
    made["env"].add_argument(
        "--format",
        choices=["dotenv", "configmap", "secret"],
        help="dotenv (default; docker compose, systemd), configmap, or secret (with credentials)",
    )
    _add_namespace(made["env"])
    kind(
        "networkpolicy",
        "Kubernetes NetworkPolicies that allow what goes direct, and the proxy",
        _networkpolicy_options,
    )
    np = made["networkpolicy"]
    np.add_argument(
        "--proxy-cidr", type=_cidr, metavar="CIDR", help="the proxy's address (e.g. 10.0.5.10/32)"
    )
    np.add_argument(
        "--warehouse-cidr",
        type=_warehouse_cidr,
        action="append",
        default=[],
        metavar="KIND=CIDR",
        help="where a warehouse that goes direct lives (repeatable)",
    )
    _add_namespace(np)
    np.add_argument(
        "--pod-selector",
        type=_label,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="select the platform's pods by this label (repeatable; default: every pod)",
    )
    np.add_argument(
        "--in-cluster",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="allow traffic between the namespace's pods (default: on)",
    )
    kind(
        "squid",
        "a Squid allowlist of the destinations in scope, for the proxy team",
        _squid_options,
    )
    _add_features(made["squid"])
    kind("pac", "a PAC file that sends each destination where the router does", _no_options)
    _add_install(kinds)
    missing = set(KINDS) - set(made)
    assert not missing, f"render kinds without a subcommand: {missing}"


def _add_install(kinds: Any) -> None:
    """``render install``: not one of KINDS (its flags are its own, and the console's Artifacts
    page renders every KIND with no flags), so it has its own command function."""
    from egress.render.install import FAILURE_POLICIES, FAILURE_POLICY_TRADE_OFF, STORES

    help_ = "the Kubernetes objects that run egress in a cluster (console, webhook, settings)"
    p = kinds.add_parser("install", help=help_, description=help_)
    _add_common(p)
    p.set_defaults(func=cmd_render_install)
    p.add_argument(
        "--namespace",
        type=_namespace,
        default="egress",
        metavar="NS",
        help="egress's own namespace (default egress)",
    )
    p.add_argument("--image", type=_image, metavar="IMG", help="the egress image to run")
    p.add_argument(
        "--replicas",
        type=_replicas,
        default=1,
        metavar="N",
        help="console replicas (default 1; more than one needs --store postgresql)",
    )
    p.add_argument(
        "--store",
        choices=STORES,
        default="sqlite",
        help="sqlite (default: one replica, a PersistentVolumeClaim) or postgresql (the URL "
        "from the Secret egress-console-db, key url, that you create)",
    )
    p.add_argument(
        "--failure-policy",
        choices=FAILURE_POLICIES,
        default="Ignore",
        help=f"what the API server does when the webhook cannot answer. {FAILURE_POLICY_TRADE_OFF}",
    )
    p.add_argument(
        "--inject-namespace",
        type=_namespace,
        action="append",
        default=[],
        metavar="NS",
        help="also render the settings, CA and proxy Secret into NS, whose pods mount them "
        "(repeatable)",
    )
    p.add_argument(
        "--with-secrets",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="write the proxy password into the egress-proxy Secrets (default: no value)",
    )
    p.add_argument(
        "--proxy-cidr",
        type=_cidr,
        metavar="CIDR",
        help="the proxy's address for the console's NetworkPolicy, when the settings name it "
        "by host name",
    )
    p.add_argument(
        "--db-cidr",
        type=_cidr,
        metavar="CIDR",
        help="the PostgreSQL store's address for the console's NetworkPolicy",
    )
    p.add_argument(
        "--db-port", type=_port, default=5432, metavar="P", help="the store's port (5432)"
    )
    p.add_argument(
        "--webhook-ca-file",
        metavar="F",
        help="PEM of the CA that signed the egress-webhook-tls certificate, for the caBundle "
        "(without it: cert-manager's cainjector annotation)",
    )


_IMAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@+-]*")


def _image(text: str) -> str:
    """``--image``: a container image reference (``registry:5000/team/egress:1.0``)."""
    if len(text) <= 512 and _IMAGE.fullmatch(text):
        return text
    raise argparse.ArgumentTypeError(
        f"{shown(text)} is not an image reference; write e.g. registry.example/egress:0.1.0"
    )


def _replicas(text: str) -> int:
    if text.isascii() and text.isdigit() and 1 <= int(text) <= 100:
        return int(text)
    raise argparse.ArgumentTypeError(
        f"{shown(text)} is not a number of replicas; give a whole number from 1 to 100"
    )


def _webhook_ca(args: argparse.Namespace) -> str | None:
    from egress.settings.fields import Problems
    from egress.settings.files import CA_LIMIT, read_regular_file

    if args.webhook_ca_file is None:
        return None
    p = Problems()
    data = read_regular_file(
        args.webhook_ca_file, "--webhook-ca-file", CA_LIMIT, p, fix="give the CA as a PEM file"
    )
    if data is None:
        args.parser.error(p.errors[0].message)
    assert data is not None
    text = data.decode("ascii", "replace")
    if "-----BEGIN CERTIFICATE-----" not in text:
        args.parser.error(
            f"--webhook-ca-file {shown(args.webhook_ca_file)} holds no PEM certificate; give "
            "the CA that signed the webhook's certificate"
        )
    return text


def _install_options(args: argparse.Namespace) -> Any:
    from egress.render.install import DEFAULT_IMAGE, InstallOptions, check_options

    options = InstallOptions(
        namespace=args.namespace,
        image=args.image or DEFAULT_IMAGE,
        replicas=args.replicas,
        store=args.store,
        failure_policy=args.failure_policy,
        inject_namespaces=tuple(dict.fromkeys(args.inject_namespace)),
        with_secrets=args.with_secrets,
        proxy_cidr=args.proxy_cidr,
        db_cidr=args.db_cidr,
        db_port=args.db_port,
        webhook_ca=_webhook_ca(args),
    )
    try:
        check_options(options)
    except UsageError as exc:
        args.parser.error(str(exc))
    return options


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="egress",
        description="One explainable route for every outbound connection behind a corporate proxy.",
    )
    parser.add_argument("--version", action="version", version="egress 0.1.0")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    ex = sub.add_parser("explain", help="the route for one URL, and why")
    ex.add_argument("url", metavar="URL", help="http(s)://, ws(s)://, postgresql://host/db, ...")
    ex.add_argument(
        "--warehouse",
        metavar="KIND",
        choices=list(WAREHOUSES),
        help=f"the destination is this warehouse ({', '.join(WAREHOUSES)})",
    )
    _add_common(ex)
    ex.add_argument("--proxy", metavar="URL", help="the proxy (switched on), instead of settings")
    ex.add_argument("--no-proxy", metavar="LIST", help="comma-separated exclusions (NO_PROXY)")
    ex.add_argument("--json", action="store_true", help="print one JSON object")
    ex.add_argument("--all-rules", action="store_true", help="also list every compiled rule")
    ex.set_defaults(func=cmd_explain)

    va = sub.add_parser("validate", help="every problem and warning in the settings")
    _add_common(va)
    va.add_argument("--json", action="store_true", help="print one JSON object")
    va.set_defaults(func=cmd_validate)

    sc = sub.add_parser(
        "schema",
        help="the JSON Schema of egress.yaml, for editors",
        description="Print the JSON Schema (draft 2020-12) of egress.yaml, made from the same "
        "declaration of fields the loader reads, e.g. for yaml-language-server: "
        "egress schema > egress.schema.json",
    )
    sc.set_defaults(func=cmd_schema)

    re_ = sub.add_parser(
        "render",
        help="an artifact for the operator, on stdout",
        description="An artifact for the operator, on stdout; its warnings on stderr.",
    )
    _add_render_kinds(re_)

    ca = sub.add_parser("catalog", help="destinations in scope, and the route each one takes")
    _add_common(ca)
    _add_features(ca)
    ca.add_argument("--json", action="store_true", help="print a JSON list")
    ca.set_defaults(func=cmd_catalog)

    ck = sub.add_parser(
        "check",
        help="probe every destination in scope along its route; name each failure and its fix",
        description="Probe every destination in scope (catalog, settings.endpoints, --url) "
        "along the route the router decides. Exit 0 when every required one is ok, 1 when one "
        "failed, 3 for invalid settings.",
    )
    _add_common(ck)
    _add_features(ck)
    ck.add_argument("--json", action="store_true", help="print a JSON list, one per destination")
    ck.add_argument(
        "--timeout",
        type=_seconds,
        default=5.0,
        metavar="S",
        help="seconds each check has, as a whole (default 5)",
    )
    ck.add_argument(
        "--url", action="append", default=[], metavar="URL", help="also check URL (repeatable)"
    )
    ck.add_argument("--report", metavar="F.html", help="also write an HTML page for the proxy team")
    ck.set_defaults(func=cmd_check)

    ci = sub.add_parser(
        "cluster-ip",
        help="the ClusterIP of the kubernetes Service (KUBERNETES_SERVICE_HOST, else kubectl)",
    )
    _add_common(ci, source=False)
    ci.add_argument(
        "--timeout",
        type=_seconds,
        default=20.0,
        metavar="S",
        help=f"seconds to wait for kubectl (default 20, at most {MAX_TIMEOUT:g})",
    )
    ci.set_defaults(func=cmd_cluster_ip)

    tu = sub.add_parser(
        "tunnel",
        help="a loopback port carried to a TCP warehouse through the proxy's CONNECT",
        description="Listen on loopback and carry every connection to --target through the "
        "proxy's CONNECT, until stopped (Ctrl-C or SIGTERM exit 0).",
    )
    tu.add_argument(
        "--target", required=True, metavar="HOST:PORT", help="the warehouse (or a URL of it)"
    )
    tu.add_argument(
        "--listen",
        type=_listen,
        default=("127.0.0.1", 0),
        metavar="ADDR:PORT",
        help="where to listen (default 127.0.0.1 on a free port)",
    )
    tu.add_argument(
        "--warehouse",
        metavar="KIND",
        choices=list(WAREHOUSES),
        help="the target is this warehouse (default: by port, 5432 postgres, 5439 redshift)",
    )
    _add_common(tu)
    tu.set_defaults(func=cmd_tunnel)

    co = sub.add_parser(
        "console",
        help="the admin console: the switch, settings with history, routes, preflight, artifacts",
        description="Serve the admin console until stopped (Ctrl-C or SIGTERM exit 0). The "
        "first run creates the admin account (password printed once, or taken from "
        "EGRESS_ADMIN_PASSWORD) and imports --import F as the first settings.",
    )
    co.add_argument(
        "--db",
        default=os.environ.get("EGRESS_CONSOLE_DB") or "sqlite:///var/egress.db",
        metavar="URL",
        help="the store: sqlite:///path, a file path, or postgresql://user@host/db (default "
        "$EGRESS_CONSOLE_DB, which keeps a database password out of the process list, else "
        "sqlite:///var/egress.db under the working directory)",
    )
    co.add_argument(
        "--host", default="127.0.0.1", metavar="H", help="address to listen on (default 127.0.0.1)"
    )
    co.add_argument(
        "--port",
        type=_port,
        default=8080,
        metavar="P",
        help="port to listen on (default 8080; 0 picks a free one)",
    )
    co.add_argument(
        "--import",
        dest="import_file",
        metavar="F",
        help="egress.yaml to import as the first settings (first run only)",
    )
    _add_common(co, source=False)
    co.set_defaults(func=cmd_console)

    wh = sub.add_parser(
        "webhook",
        help="the admission webhook: proxy variables, CA and settings injected into pods",
        description="Serve the Kubernetes admission webhook over HTTPS (POST /mutate, GET "
        "/healthz) until stopped (Ctrl-C or SIGTERM exit 0). Settings from --config F (re-read "
        "when the file changes), else from the proxy variables.",
    )
    wh.add_argument("--config", metavar="F", help="egress.yaml (the egress-settings ConfigMap)")
    wh.add_argument("--tls-cert", required=True, metavar="F", help="PEM certificate (chain)")
    wh.add_argument("--tls-key", required=True, metavar="F", help="PEM private key")
    wh.add_argument(
        "--host",
        default="0.0.0.0",
        metavar="H",
        help="address to listen on (default 0.0.0.0: the API server calls it through a Service)",
    )
    wh.add_argument(
        "--port",
        type=_port,
        default=8443,
        metavar="P",
        help="port to listen on (default 8443; 0 picks a free one)",
    )
    wh.set_defaults(func=cmd_webhook)
    return parser


def _port(text: str) -> int:
    """``--port P``: 0 to 65535 (0 picks a free port)."""
    if text.isascii() and text.isdigit() and len(text) <= 5 and int(text) <= 65535:
        return int(text)
    raise argparse.ArgumentTypeError(f"{shown(text)} is not a port; use a number from 0 to 65535")


def _listen(text: str) -> tuple[str, int]:
    """``--listen ADDR:PORT`` (``[::1]:5432`` for IPv6; port 0 picks a free one)."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
        ok = sep and port.isdigit() and 0 <= int(port) < 65536
    except ValueError:
        ok = False
    if not ok:
        raise argparse.ArgumentTypeError(
            f"{shown(text)} is not ADDR:PORT; write e.g. 127.0.0.1:15432 (port 0: a free one)"
        )
    return host, int(port)


# -- loading settings ----------------------------------------------------------------------------


def _load(args: argparse.Namespace, con: _Console) -> Settings:
    if args.config:
        settings = load_yaml(args.config)
    elif args.helm_values:
        settings = load_helm_values(args.helm_values)
    else:
        settings = load_environment()
    return _kept(settings, con)


def _kept(settings: Settings, con: _Console) -> Settings:
    """``settings``, with its proxy password made unprintable on ``con``."""
    password = settings.proxy.password
    con.keep_secret(password.reveal() if password is not None else None)
    return settings


def _settings_for_explain(args: argparse.Namespace, con: _Console) -> Settings:
    if args.proxy is not None and not (args.config or args.helm_values):
        return _kept(Settings.from_proxy(args.proxy, no_proxy=args.no_proxy), con)
    settings = _load(args, con)
    if args.proxy is None and args.no_proxy is None:
        return settings
    return _kept(settings.override(proxy_url=args.proxy, no_proxy=args.no_proxy), con)


def _features(text: str | None) -> tuple[str, ...] | None:
    """``--features``: the names, or ConfigError (exit 3) for one the catalog does not know.

    Checked here, before anything is loaded, so every command that takes ``--features`` refuses
    an unknown name with the same message.
    """
    if text is None:
        return None
    from egress.catalog import check_features

    names = tuple(t for t in text.replace(",", " ").split() if t)
    problems = check_features(names, "--features")
    if problems:
        raise ConfigError(problems)
    return names


# -- commands ------------------------------------------------------------------------------------


def cmd_explain(args: argparse.Namespace, con: _Console) -> int:
    settings = _settings_for_explain(args, con)
    router = settings.router()
    decision = router.decide(args.url, warehouse=args.warehouse)
    # Only what changes routes is repeated here; `egress validate` lists every warning.
    con.problems("note", [w for w in settings.warnings if _about_routing(w)])
    if args.json:
        payload: dict[str, object] = dict(decision.as_dict())
        payload["url"] = mask_url(decision.url)
        auth = settings.proxy.auth_shown(decision.proxy_url)
        if auth is not None and decision.route in ("proxy", "tunnel"):
            payload["auth"] = auth
        if decision.route == "tunnel":
            payload["note"] = _tunnel_note(decision)
        if args.all_rules:
            payload["rules"] = [
                {
                    "rule": r.rule,
                    "entries": list(r.entries),
                    "route": r.route,
                    "source": r.source,
                    "reason": r.sentence,
                }
                for r in router.rules()
            ]
        con.json(payload, indent=2 if args.all_rules else None)
        return Exit.OK
    _print_decision(decision, con)
    auth = settings.proxy.auth_shown(decision.proxy_url)
    if auth is not None and decision.route in ("proxy", "tunnel"):
        con.out(f"  auth    {printable(auth)}")
    if decision.route == "tunnel":
        con.out(f"  note    {_tunnel_note(decision)}")
    if args.all_rules:
        con.out()
        con.out("rules, in the order they are tried:")
        for r in router.rules():
            entries = ", ".join(r.entries) if r.entries else "-"
            con.out(f"  {r.rule:<28} {r.route:<7} {entries}")
            con.out(f"  {'':<28} from {r.source}: {r.sentence}")
    return Exit.OK


def _tunnel_note(d: Decision) -> str:
    """How a component connects on the tunnel route (``egress explain``)."""
    t = d.target
    kind = d.warehouse or "postgres"
    return (
        f"a component connects its driver to a loopback tunnel: "
        f"egress.warehouses.connect_params(settings, {kind!r}, {t.host_text!r}, {t.port}) gives "
        f"host={t.host_text} hostaddr=127.0.0.1 port=<the tunnel's port> (the name stays for "
        f"sslmode=verify-full); by hand, `egress tunnel --target {t.authority} --warehouse {kind}`"
    )


def _about_routing(warning: Problem) -> bool:
    """Warnings that bear on a decision: the unknown service IP, ignored no-proxy tokens."""
    name = warning.field.lower()
    return (
        "service_ip" in name
        or "kubernetes_service_host" in name
        or "excluded" in name
        or "no_proxy" in name
        or "no-proxy" in name
    )


def _print_decision(d: Decision, con: _Console) -> None:
    con.out(mask_url(d.url))
    con.out(f"  route   {d.route}")
    con.out(f"  proxy   {d.proxy or '-'}")
    con.out(f"  rule    {d.rule}")
    con.out(f"  reason  {d.reason}")


def cmd_schema(args: argparse.Namespace, con: _Console) -> int:
    """``egress schema``: the JSON Schema of egress.yaml, on stdout."""
    from egress.settings.declaration import json_schema

    for line in json.dumps(json_schema(), indent=2).splitlines():
        con.out(line)
    return Exit.OK


def cmd_validate(args: argparse.Namespace, con: _Console) -> int:
    errors: list[Problem]
    warnings: list[Problem]
    try:
        settings = _load(args, con)
        errors, warnings = [], [*settings.warnings, *routing_notes(settings.router())]
        if settings.proxy.auth == "negotiate":
            from egress.kerberos import credential_warnings

            warnings += credential_warnings(settings)
    except ConfigError as exc:
        errors, warnings = list(exc.problems), list(exc.warnings)
    valid = not errors
    if args.json:
        con.json(
            {
                "valid": valid,
                "errors": [e.as_dict() for e in errors],
                "warnings": [w.as_dict() for w in warnings],
            }
        )
    else:
        source = args.config or args.helm_values or "the environment"
        counted = _count(len(warnings), "warning")
        if valid:
            con.out(f"{source}: valid ({counted})")
        else:
            con.out(f"{source}: invalid ({_count(len(errors), 'error')}, {counted})")
        con.problems("error", errors, to_stdout=True)
        con.problems("warning", warnings, to_stdout=True)
    return Exit.OK if valid else Exit.INVALID


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' if n != 1 else ''}"


def cmd_render(args: argparse.Namespace, con: _Console) -> int:
    options: RenderOptions = args.options(args)  # flags first: a usage error before any loading
    settings = _load(args, con)
    artifact = renderer(args.kind)(settings, options)  # refuses what no runtime could use
    con.data(artifact.text)
    for warning in artifact.warnings:
        con.err(f"warning: {warning}")
    return Exit.OK


def cmd_render_install(args: argparse.Namespace, con: _Console) -> int:
    from egress.render import install

    options = _install_options(args)  # flags first: a usage error before any loading
    settings = _load(args, con)
    artifact = install.render(settings, options)
    con.data(artifact.text)
    for warning in artifact.warnings:
        con.err(f"warning: {warning}")
    return Exit.OK


def cmd_catalog(args: argparse.Namespace, con: _Console) -> int:
    from egress.scope import in_scope

    features = _features(args.features)
    settings = _load(args, con)
    rows = in_scope(settings, features)
    if args.json:
        con.json([row.as_dict() for row in rows], indent=2)
        return Exit.OK
    width = max((len(r.destination) for r in rows), default=10)
    for r in rows:
        need = "required" if r.required else "optional"
        con.out(f"{r.destination:<{width}}  {r.route:<6}  {r.feature:<16} {need:<8}  {r.purpose}")
        con.out(f"{'':<{width}}  {'':<6}  rule {r.rule}: {r.reason}")
    return Exit.OK


def cmd_check(args: argparse.Namespace, con: _Console) -> int:
    from egress.check import exit_code, failed, probes_for, run_checks
    from egress.router import parse_target

    features = _features(args.features)
    for url in args.url:
        parse_target(url)  # an unroutable --url is a usage error before anything runs
    settings = _load(args, con)
    probes = probes_for(settings, features, args.url)
    live = not args.json and con.stdout.isatty()
    if live:
        results = _run_checks_live(settings, probes, args.timeout, con)
    else:
        results = run_checks(settings, probes, timeout=args.timeout)
    if args.json:
        con.json([r.as_dict() for r in results], indent=2)
    else:
        if live:
            from rich.console import Console

            Console(file=con.stdout).print(check_table(results, con.clean))
        else:
            width = max((len(r.url) for r in results), default=10)
            for r in results:
                need = "required" if r.required else "optional"
                con.out(
                    f"{r.status:<20} {r.url:<{width}}  {r.route:<6} {need}  {r.elapsed_ms:.0f} ms"
                )
                con.out(f"{'':<20} {r.detail}")
                if r.fix:
                    con.out(f"{'':<20} fix: {r.fix}")
        bad, warned = failed(results)
        con.out(
            f"{len(results)} checked: {len(results) - len(bad) - len(warned)} ok, "
            f"{len(bad)} required failed, {len(warned)} warnings"
        )
    if args.report:
        _write_report(args.report, settings, results, features, con)
    return Exit(exit_code(results))


def _run_checks_live(
    settings: Settings, probes: Sequence[Probe], timeout: float, con: _Console
) -> list[CheckResult]:
    """``run_checks`` with a progress bar on the terminal (stderr), one step per result."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from egress.check import run_checks

    columns = (
        TextColumn("checking"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
    )
    with Progress(*columns, console=Console(file=con.stderr), transient=True) as bar:
        task = bar.add_task("", total=len(probes), last="")

        def step(result: CheckResult) -> None:
            bar.update(task, advance=1, last=con.clean(f"{result.status} {result.host}"))

        return run_checks(settings, probes, timeout=timeout, on_result=step)


def check_table(results: Sequence[CheckResult], clean: Callable[[str], str]) -> Any:
    """The results as a rich Table for a terminal; every value is plain text (``clean``ed, and
    never read as rich markup), status coloured and spelled out."""
    from rich.table import Table
    from rich.text import Text

    from egress.check import failed

    bad, warned = failed(results)
    style = {id(r): "red" for r in bad} | {id(r): "yellow" for r in warned}
    table = Table(title="egress check", expand=False, show_lines=False)
    for name in ("status", "destination", "route", "", "ms", "fix"):
        table.add_column(name, overflow="fold")
    for r in results:
        table.add_row(
            Text(r.status, style=style.get(id(r), "green")),
            Text(clean(r.url)),
            Text(f"{r.route} ({clean(r.rule)})"),
            Text("required" if r.required else "optional"),
            Text(f"{r.elapsed_ms:.0f}"),
            Text(clean(r.fix or r.detail)),
        )
    return table


def _write_report(
    path: str,
    settings: Settings,
    results: list[CheckResult],
    features: tuple[str, ...] | None,
    con: _Console,
) -> None:
    """``--report``: the self-contained page for the proxy team."""
    from egress.check_report import html_report

    page = html_report(settings, results, features=features)
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(page)
    except OSError as exc:
        con.fail(f"--report: cannot write {shown(path)} ({exc.strerror})", "give a writable path")
        return
    con.err(f"report written to {printable(path)}")


def cmd_cluster_ip(args: argparse.Namespace, con: _Console) -> int:
    host = os.environ.get("KUBERNETES_SERVICE_HOST", "").strip()
    if host:
        try:
            con.out(str(ipaddress.ip_address(host)))
            return Exit.OK
        except ValueError:
            con.fail(
                f"KUBERNETES_SERVICE_HOST is {shown(host)}, which is not an IP address",
                "unset it to ask kubectl instead",
            )
            return Exit.FAILED
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        con.fail(
            "KUBERNETES_SERVICE_HOST is not set and kubectl is not on PATH",
            "run this inside a pod, or install kubectl with access to the cluster",
        )
        return Exit.FAILED
    try:
        proc = subprocess.run(
            [kubectl, *KUBECTL_ARGS],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=args.timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        con.fail(f"kubectl did not answer within {args.timeout:g} s", "check the cluster access")
        return Exit.FAILED
    if proc.returncode != 0:
        detail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        con.fail(
            f"kubectl failed (exit {proc.returncode}): {detail[:300]}",
            "check that kubectl can reach the cluster: kubectl get svc kubernetes -n default",
        )
        return Exit.FAILED
    value = proc.stdout.strip()
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        con.fail(
            f"kubectl printed {shown(value, 60)}, which is not an IP address",
            "check the kubernetes Service in the default namespace",
        )
        return Exit.FAILED
    con.out(str(ip))
    con.err(f"put it in your settings: deployment.service_ip: {ip}")
    return Exit.OK


# -- entry point ---------------------------------------------------------------------------------


def cmd_tunnel(args: argparse.Namespace, con: _Console) -> int:
    import logging
    import signal
    import threading

    from egress.tunnel import Tunnel, decide_target

    settings = _load(args, con)
    d = decide_target(settings, args.target, args.warehouse)
    if d.route == "direct":
        con.fail(
            f"{d.target.authority} is decided direct ({d.rule}), so egress does not tunnel it: "
            f"{d.reason}",
            "connect to it directly, or set tunnel_tcp_warehouses: true and a proxy to carry it "
            "through CONNECT",
        )
        return Exit.INVALID

    class _ToConsole(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            con.err(f"egress tunnel: {record.getMessage()}")

    log = logging.getLogger("egress.tunnel")
    log.addHandler(_ToConsole())
    log.setLevel(logging.INFO)
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        with Tunnel(settings, args.target, kind=args.warehouse, listen=args.listen) as t:
            host, port = t.address
            con.out(f"route   {d.route} via {d.proxy} ({d.rule})")
            con.out(f"listen  {host}:{port} -> {d.target.authority}")
            con.out(
                f"connect host={d.target.host_text} hostaddr={host} port={port} "
                "(libpq: the name stays for sslmode=verify-full)"
            )
            con.stdout.flush()
            try:
                while not stop.wait(0.5):
                    pass
            except KeyboardInterrupt:
                pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    return Exit.OK


def cmd_console(args: argparse.Namespace, con: _Console) -> int:
    from egress.console.serve import ServeOptions, serve

    options = ServeOptions(db=args.db, host=args.host, port=args.port, import_file=args.import_file)
    con.keep_secret(os.environ.get("EGRESS_ADMIN_PASSWORD"))
    con.keep_url_secrets([args.db])

    def say(line: str) -> None:
        con.out(line)
        con.stdout.flush()

    return serve(options, env=os.environ, say=say)


def cmd_webhook(args: argparse.Namespace, con: _Console) -> int:
    from egress.webhook.server import WebhookOptions, serve

    options = WebhookOptions(
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        config=args.config,
        host=args.host,
        port=args.port,
    )

    def say(line: str) -> None:
        con.out(line)
        con.stdout.flush()

    return serve(options, env=os.environ, say=say)


def report(exc: BaseException, con: _Console, *, debug: bool = False) -> int:
    """Say what went wrong in one sentence and a hint (the traceback too with ``debug``).

    The exit code: 3 for refused settings, 2 for a wrong command line or URL, 1 for a request
    that could not be carried out, 70 for a bug in egress.
    """
    if debug:
        con.traceback(exc)
    if isinstance(exc, ConfigError):
        con.problems("error", exc.problems)
        return Exit.INVALID
    if isinstance(exc, EgressTransportError):
        con.fail(str(exc), exc.hint)
        return Exit.FAILED
    if isinstance(exc, EgressError):
        con.fail(str(exc), exc.hint)
        return Exit.USAGE
    con.fail(
        f"internal error: {type(exc).__name__}: {str(exc)[:300]}",
        "this is a bug in egress; run again with --debug for the traceback and report it",
    )
    return Exit.INTERNAL


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit code (argparse exits 2 itself on a usage error)."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    con = _Console(sys.stdout, sys.stderr)
    con.keep_url_secrets(arguments)
    con.keep_url_secrets(
        value
        for name in PROXY_VARIABLES
        for value in (os.environ.get(name), os.environ.get(name.lower()))
        if value
    )
    parser = _build_parser()
    _Parser.secrets = con.secrets
    args, extra = parser.parse_known_args(arguments)
    if extra:  # e.g. `render helm --format x`: said by the subcommand that does not take it
        getattr(args, "parser", parser).error(f"unrecognized arguments: {' '.join(extra)}")
    func: Callable[[argparse.Namespace, _Console], int] = args.func
    try:
        return int(func(args, con))
    except KeyboardInterrupt:
        return Exit.INTERRUPTED
    except BrokenPipeError:
        _quiet_stdout()
        return Exit.FAILED
    except Exception as exc:  # every error ends as one sentence, never a bare traceback
        return report(exc, con, debug=args.debug)


def _quiet_stdout() -> None:
    """The reader went away (``| head``): point stdout at /dev/null so the final flush is silent."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


if __name__ == "__main__":
    sys.exit(main())
