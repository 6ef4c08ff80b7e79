"""The ``egress`` command line. Exit codes are :class:`Exit`; errors are one sentence and a hint."""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from enum import IntEnum
from typing import TextIO

from egress.errors import ConfigError, EgressError, Problem
from egress.render import KINDS, RenderOptions, renderer
from egress.router import Decision
from egress.settings import Settings, load_environment, load_helm_values, load_yaml
from egress.warehouses import WAREHOUSES

KUBECTL_ARGS = ["get", "svc", "kubernetes", "-n", "default", "-o", "jsonpath={.spec.clusterIP}"]


class UsageError(EgressError):
    """The command line itself is wrong (exit 2)."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


class Exit(IntEnum):
    """Every exit code of the command line."""

    OK = 0
    FAILED = 1  # a check failed, or a value could not be found
    USAGE = 2  # the command line itself is wrong
    INVALID = 3  # the settings are invalid


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        sys.stderr.write(f"egress: error: {message}\n  hint: run '{self.prog} --help'\n")
        raise SystemExit(Exit.USAGE)


def _add_source(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("--config", metavar="F", help="egress.yaml to load")
    group.add_argument(
        "--helm-values", metavar="F", help="the seed chart's customizations.yaml to load"
    )


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
    _add_source(ex)
    ex.add_argument("--proxy", metavar="URL", help="the proxy (switched on), instead of settings")
    ex.add_argument("--no-proxy", metavar="LIST", help="comma-separated exclusions (NO_PROXY)")
    ex.add_argument("--json", action="store_true", help="print one JSON object")
    ex.add_argument("--all-rules", action="store_true", help="also list every compiled rule")
    ex.set_defaults(func=cmd_explain)

    va = sub.add_parser("validate", help="every problem and warning in the settings")
    _add_source(va)
    va.add_argument("--json", action="store_true", help="print one JSON object")
    va.set_defaults(func=cmd_validate)

    re_ = sub.add_parser("render", help="an artifact for the operator, on stdout")
    re_.add_argument("kind", choices=list(KINDS), metavar="KIND", help=" | ".join(KINDS))
    _add_source(re_)
    re_.add_argument(
        "--format",
        choices=["dotenv", "configmap", "secret"],
        help="env only: dotenv (default), configmap or secret",
    )
    re_.add_argument("--proxy-cidr", metavar="CIDR", help="networkpolicy: the proxy's address")
    re_.add_argument(
        "--warehouse-cidr",
        action="append",
        default=[],
        metavar="KIND=CIDR",
        help="networkpolicy: where a warehouse that goes direct lives (repeatable)",
    )
    re_.add_argument("--features", metavar="LIST", help="comma-separated feature groups in scope")
    re_.add_argument("--namespace", metavar="NS", help="Kubernetes namespace for the objects")
    re_.add_argument(
        "--pod-selector",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="networkpolicy: select the platform's pods by this label (repeatable)",
    )
    re_.add_argument(
        "--in-cluster",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="networkpolicy: allow traffic between the namespace's pods (default: on)",
    )
    re_.set_defaults(func=cmd_render)

    ca = sub.add_parser("catalog", help="destinations in scope, and the route each one takes")
    _add_source(ca)
    ca.add_argument("--features", metavar="LIST", help="comma-separated feature groups in scope")
    ca.add_argument("--json", action="store_true", help="print a JSON list")
    ca.set_defaults(func=cmd_catalog)

    ci = sub.add_parser(
        "cluster-ip",
        help="the ClusterIP of the kubernetes Service (KUBERNETES_SERVICE_HOST, else kubectl)",
    )
    ci.add_argument(
        "--timeout",
        type=float,
        default=20.0,
        metavar="S",
        help="seconds to wait for kubectl (default 20)",
    )
    ci.set_defaults(func=cmd_cluster_ip)
    return parser


# -- loading settings ----------------------------------------------------------------------------


def _load(args: argparse.Namespace) -> Settings:
    if args.config:
        return load_yaml(args.config)
    if args.helm_values:
        return load_helm_values(args.helm_values)
    return load_environment()


def _settings_for_explain(args: argparse.Namespace) -> Settings:
    if args.proxy is not None and not (args.config or args.helm_values):
        return Settings.from_proxy(args.proxy, no_proxy=args.no_proxy)
    settings = _load(args)
    if args.proxy is None and args.no_proxy is None:
        return settings
    return settings.override(proxy_url=args.proxy, no_proxy=args.no_proxy)


# -- output helpers --------------------------------------------------------------------------------


def _problem_lines(kind: str, problems: Sequence[Problem], out: TextIO) -> None:
    for pr in problems:
        out.write(f"{kind}: {pr.field}: {pr.message}\n" if pr.field else f"{kind}: {pr.message}\n")
        if pr.hint:
            out.write(f"  hint: {pr.hint}\n")


def _fail(message: str, hint: str = "") -> None:
    sys.stderr.write(f"egress: error: {message}\n")
    if hint:
        sys.stderr.write(f"  hint: {hint}\n")


# -- commands ------------------------------------------------------------------------------------


def cmd_explain(args: argparse.Namespace) -> int:
    settings = _settings_for_explain(args)
    decision = settings.router().decide(args.url, warehouse=args.warehouse)
    # Only what changes routes is repeated here; `egress validate` lists every warning.
    _problem_lines("note", [w for w in settings.warnings if _about_routing(w)], sys.stderr)
    if args.json:
        payload: dict[str, object] = dict(decision.as_dict())
        if args.all_rules:
            payload["rules"] = [
                {
                    "rule": r.rule,
                    "entries": list(r.entries),
                    "route": r.route,
                    "source": r.source,
                    "reason": r.sentence,
                }
                for r in settings.router().rules()
            ]
        print(json.dumps(payload, indent=None if not args.all_rules else 2))
        return Exit.OK
    _print_decision(decision)
    if args.all_rules:
        print("\nrules, in the order they are tried:")
        for r in settings.router().rules():
            entries = ", ".join(r.entries) if r.entries else "-"
            print(f"  {r.rule:<28} {r.route:<7} {entries}")
            print(f"  {'':<28} from {r.source}: {r.sentence}")
    return Exit.OK


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


def _print_decision(d: Decision) -> None:
    print(d.url)
    print(f"  route   {d.route}")
    print(f"  proxy   {d.proxy or '-'}")
    print(f"  rule    {d.rule}")
    print(f"  reason  {d.reason}")


def cmd_validate(args: argparse.Namespace) -> int:
    errors: list[Problem]
    warnings: list[Problem]
    try:
        settings = _load(args)
        errors, warnings = [], list(settings.warnings)
    except ConfigError as exc:
        errors, warnings = list(exc.problems), list(exc.warnings)
    valid = not errors
    if args.json:
        print(
            json.dumps(
                {
                    "valid": valid,
                    "errors": [e.as_dict() for e in errors],
                    "warnings": [w.as_dict() for w in warnings],
                }
            )
        )
    else:
        source = args.config or args.helm_values or "the environment"
        if valid:
            print(f"{source}: valid ({len(warnings)} warning{'s' if len(warnings) != 1 else ''})")
        else:
            print(
                f"{source}: invalid ({len(errors)} error{'s' if len(errors) != 1 else ''}, "
                f"{len(warnings)} warning{'s' if len(warnings) != 1 else ''})"
            )
        _problem_lines("error", errors, sys.stdout)
        _problem_lines("warning", warnings, sys.stdout)
    return Exit.OK if valid else Exit.INVALID


def _features(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    return tuple(t for t in text.replace(",", " ").split() if t)


def _warehouse_cidrs(pairs: Sequence[str]) -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    for pair in pairs:
        kind, sep, cidr = pair.partition("=")
        kind = kind.strip().lower()
        if not sep or kind not in WAREHOUSES:
            raise UsageError(
                f"--warehouse-cidr {pair!r} is not KIND=CIDR with a known warehouse",
                "write e.g. --warehouse-cidr postgres=10.20.0.0/16 "
                f"(kinds: {', '.join(WAREHOUSES)})",
            )
        try:
            network = ipaddress.ip_network(cidr.strip(), strict=False)
        except ValueError as exc:
            raise UsageError(
                f"--warehouse-cidr {pair!r} has {cidr!r}, which is not a CIDR",
                "write e.g. 10.20.0.0/16",
            ) from exc
        out.append((kind, str(network)))
    return tuple(out)


def _labels(pairs: Sequence[str]) -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(
                f"--pod-selector {pair!r} is not KEY=VALUE",
                "write e.g. --pod-selector app.kubernetes.io/part-of=carto",
            )
        out.append((key.strip(), value.strip()))
    return tuple(out)


def cmd_render(args: argparse.Namespace) -> int:
    settings = _load(args)
    if args.format and args.kind != "env":
        raise UsageError("--format applies only to render env", "drop --format")
    if args.proxy_cidr is not None:
        try:
            ipaddress.ip_network(args.proxy_cidr, strict=False)
        except ValueError as exc:
            raise UsageError(
                f"--proxy-cidr {args.proxy_cidr!r} is not a CIDR", "write e.g. 10.0.5.10/32"
            ) from exc
    options = RenderOptions(
        format=args.format,
        proxy_cidr=args.proxy_cidr,
        warehouse_cidrs=_warehouse_cidrs(args.warehouse_cidr),
        features=_features(args.features),
        namespace=args.namespace,
        pod_labels=_labels(args.pod_selector),
        in_cluster=args.in_cluster,
    )
    artifact = renderer(args.kind)(settings, options)
    sys.stdout.write(artifact.text if artifact.text.endswith("\n") else artifact.text + "\n")
    for warning in artifact.warnings:
        sys.stderr.write(f"warning: {warning}\n")
    return Exit.OK


def cmd_catalog(args: argparse.Namespace) -> int:
    from egress.scope import in_scope

    settings = _load(args)
    rows = in_scope(settings, _features(args.features))
    if args.json:
        print(json.dumps([row.as_dict() for row in rows], indent=2))
        return Exit.OK
    width = max((len(r.destination) for r in rows), default=10)
    for r in rows:
        need = "required" if r.required else "optional"
        print(f"{r.destination:<{width}}  {r.route:<6}  {r.feature:<16} {need:<8}  {r.purpose}")
        print(f"{'':<{width}}  {'':<6}  rule {r.rule}: {r.reason}")
    return Exit.OK


def cmd_cluster_ip(args: argparse.Namespace) -> int:
    host = os.environ.get("KUBERNETES_SERVICE_HOST", "").strip()
    if host:
        try:
            print(ipaddress.ip_address(host))
            return Exit.OK
        except ValueError:
            _fail(
                f"KUBERNETES_SERVICE_HOST is {host!r}, which is not an IP address",
                "unset it to ask kubectl instead",
            )
            return Exit.FAILED
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        _fail(
            "KUBERNETES_SERVICE_HOST is not set and kubectl is not on PATH",
            "run this inside a pod, or install kubectl with access to the cluster",
        )
        return Exit.FAILED
    try:
        proc = subprocess.run(
            [kubectl, *KUBECTL_ARGS],
            capture_output=True,
            text=True,
            timeout=args.timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        _fail(f"kubectl did not answer within {args.timeout:g} s", "check the cluster access")
        return Exit.FAILED
    if proc.returncode != 0:
        detail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        _fail(
            f"kubectl failed (exit {proc.returncode}): {detail}",
            "check that kubectl can reach the cluster: kubectl get svc kubernetes -n default",
        )
        return Exit.FAILED
    value = proc.stdout.strip()
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        _fail(
            f"kubectl printed {value[:60]!r}, which is not an IP address",
            "check the kubernetes Service in the default namespace",
        )
        return Exit.FAILED
    print(ip)
    sys.stderr.write(f"put it in your settings: deployment.service_ip: {ip}\n")
    return Exit.OK


# -- entry point -----------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return int(func(args))
    except ConfigError as exc:
        if args.debug:
            raise
        _problem_lines("error", exc.problems, sys.stderr)
        return Exit.INVALID
    except EgressError as exc:
        if args.debug:
            raise
        _fail(str(exc), exc.hint)
        return Exit.USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
