"""The proxy and deployment sections, built the same way whichever input they came from.

The ``egress.yaml`` and Helm loaders read their own spellings, then hand the values here, so the
rules that tie fields together (a username needs a password file, an enabled proxy needs an
address, the service IP's sources) are written once.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Literal

from egress.redact import Secret, shown
from egress.settings.fields import (
    Problems,
    boolean,
    has_space_or_control,
    text,
    valid_dns_name,
)
from egress.settings.files import check_ca_file, read_regular_file, read_secret_file
from egress.settings.keytab import KEYTAB_LIMIT, holds, principals
from egress.settings.model import (
    DEPLOYMENT_KINDS,
    PROXY_AUTH_METHODS,
    Deployment,
    KerberosSettings,
    ProxySettings,
    ProxyURL,
)


def proxy_settings(
    p: Problems,
    *,
    enabled: bool,
    http_proxy: ProxyURL | None,
    https_proxy: ProxyURL | None,
    username: str | None,
    password_file: str | None,
    ca_file: str | None,
    verify: bool,
    prefix: str,
    ca_pem: str | None = None,
    ca_configmap: tuple[str, str] | None = None,
    password: Secret | None = None,
    auth: str | None = None,
    kerberos: Mapping[str, str | None] | None = None,
) -> ProxySettings:
    """The proxy section; reads the password file and checks the CA file.

    ``auth`` is ``proxy.auth`` as written (None: basic when a user name is set);
    ``kerberos`` the ``proxy.kerberos`` keys read (keytab, principal, spn).

    ``password`` is the proxy password given directly (the console's secret store), used
    instead of a password file; ``ca_pem`` is a CA already checked by its loader.
    """
    method, krb = _auth(
        p, auth, kerberos or {}, username, password_file, password, http_proxy, https_proxy, prefix
    )
    if method == "negotiate":
        username = password_file = None
        password = None
    if username is not None and (":" in username or any(ord(c) < 0x20 for c in username)):
        p.error(f"{prefix}username", "contains ':' or control characters", "give only the name")
    if password is not None:
        password = _given_password(password, f"{prefix}password", p)
        if password_file is not None:
            p.error(
                f"{prefix}password_file",
                "is set while the proxy password is given directly",
                "remove password_file: the password given directly (the console's) is used",
            )
        elif username is None:
            p.error(
                f"{prefix}username",
                "is missing while a proxy password is set",
                "set the proxy user name, or clear the password",
            )
    elif password_file is not None:
        password = read_secret_file(password_file, f"{prefix}password_file", p)
        if username is None:
            p.error(
                f"{prefix}username",
                "is missing while password_file is set",
                "set the proxy user name",
            )
    elif username is not None:
        p.error(
            f"{prefix}password_file",
            "is missing while username is set",
            "point password_file at a file that holds the proxy password",
        )
    if ca_file is not None:
        check_ca_file(ca_file, f"{prefix}ca_file", p)
        if ca_pem is not None:
            p.error(
                f"{prefix}ca_pem",
                "is set together with ca_file",
                "give the CA either as PEM text (ca_pem) or as a file (ca_file), not both",
            )
    address_refused = any(e.field.startswith(prefix) for e in p.errors)
    if enabled and http_proxy is None and https_proxy is None and not address_refused:
        p.error(
            f"{prefix}url",
            "is missing while the proxy is enabled",
            "set the proxy URL, e.g. http://proxy.corp.example:3128, or switch the proxy off",
        )
    return ProxySettings(
        enabled=enabled,
        http_proxy=http_proxy,
        https_proxy=https_proxy,
        username=username,
        password_file=password_file,
        password=password,
        ca_file=ca_file,
        ca_pem=ca_pem,
        ca_configmap=ca_configmap,
        verify=verify,
        auth=method,
        kerberos=krb,
    )


def _auth(
    p: Problems,
    auth: str | None,
    kerberos: Mapping[str, str | None],
    username: str | None,
    password_file: str | None,
    password: Secret | None,
    http_proxy: ProxyURL | None,
    https_proxy: ProxyURL | None,
    prefix: str,
) -> tuple[Literal["basic", "negotiate"] | None, KerberosSettings | None]:
    """``proxy.auth`` and ``proxy.kerberos``: the method, and for negotiate its identity."""
    fld = f"{prefix}auth"
    method = auth.strip().lower() if auth is not None else None
    given = {k: v for k, v in kerberos.items() if v is not None}
    if method is not None and method not in PROXY_AUTH_METHODS:
        p.error(fld, f"{shown(auth)} is not an authentication method", "use basic or negotiate")
        return None, None
    if method != "negotiate":
        for key in given:
            p.error(
                f"{prefix}kerberos.{key}",
                "is set while proxy.auth is not negotiate",
                "set proxy.auth: negotiate, or remove the kerberos settings",
            )
        if method == "basic" and username is None:
            p.error(
                f"{prefix}username",
                "is missing while proxy.auth is basic",
                "set the proxy user name and password_file",
            )
        return ("basic" if username is not None else None), None
    if username is not None or password_file is not None or password is not None:
        which = "username" if username is not None else "password_file"
        if password is not None and password_file is None and username is None:
            which = "password"
        p.error(
            f"{prefix}{which}",
            "is set while proxy.auth is negotiate (Kerberos needs no user name or password)",
            "remove the user name and password, or use proxy.auth: basic",
        )
    krb = KerberosSettings(
        keytab=given.get("keytab"), principal=given.get("principal"), spn=given.get("spn")
    )
    kp = f"{prefix}kerberos."
    if krb.spn is not None and (has_space_or_control(krb.spn) or not krb.spn.strip("/@")):
        p.error(f"{kp}spn", f"{shown(krb.spn)} is not a service principal", "write HTTP/<host>")
    if krb.spn is None:
        for proxy in {x for x in (http_proxy, https_proxy) if x is not None}:
            if _is_ip(proxy.host):
                p.error(
                    f"{kp}spn",
                    f"is missing while the proxy is written as an IP address ({proxy.host})",
                    "Kerberos names the proxy by its DNS name: write the proxy URL with its "
                    "host name, or set proxy.kerberos.spn to the proxy's service principal, "
                    "e.g. HTTP/proxy.corp.example",
                )
                break
    if krb.keytab is not None and krb.principal is None:
        p.error(f"{kp}principal", "is missing while keytab is set", "name the keytab's principal")
    elif krb.principal is not None and krb.keytab is None:
        p.error(f"{kp}keytab", "is missing while principal is set", "point keytab at its file")
    elif krb.keytab is not None and krb.principal is not None:
        _check_keytab(krb.keytab, krb.principal, f"{kp}keytab", p)
    return "negotiate", krb


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _check_keytab(path: str, principal: str, fld: str, p: Problems) -> None:
    """Refuse a keytab that cannot be read, is not a keytab, or lacks ``principal``."""
    data = read_regular_file(path, fld, KEYTAB_LIMIT, p, fix="point it at a client keytab")
    if data is None:
        return
    found = principals(data)
    if found is None:
        p.error(fld, f"{shown(path)} is not a Kerberos keytab", "create one with kadmin ktadd")
    elif not holds(found, principal):
        listed = ", ".join(shown(x) for x in found[:5]) or "none"
        p.error(
            fld,
            f"{shown(path)} holds no key of {shown(principal)} (it holds: {listed})",
            "set proxy.kerberos.principal to one of them, or add its key with kadmin ktadd",
        )


def deployment(
    p: Problems,
    *,
    kind: object,
    cluster_domain: object,
    service_ip: object,
    gke: object,
    prefix: str,
    env: Mapping[str, str],
    kind_field: str = "kind",
    cluster_domain_field: str = "cluster_domain",
) -> Deployment:
    """The deployment section; ``service_ip: auto`` (or none) reads ``KUBERNETES_SERVICE_HOST``."""
    kind_text = (text(kind, f"{prefix}{kind_field}", p) or "kubernetes").lower()
    if kind_text not in DEPLOYMENT_KINDS:
        p.error(
            f"{prefix}{kind_field}",
            f"{shown(kind_text)} is not a known deployment kind",
            f"use one of: {', '.join(DEPLOYMENT_KINDS)}",
        )
        kind_text = "kubernetes"
    domain = (text(cluster_domain, f"{prefix}{cluster_domain_field}", p) or "cluster.local").lower()
    domain = domain.strip(".")
    if not valid_dns_name(domain):
        p.error(
            f"{prefix}{cluster_domain_field}",
            f"{shown(domain)} is not a valid DNS domain",
            "use the cluster's DNS domain, usually cluster.local",
        )
        domain = "cluster.local"
    ip, ip_source = _service_ip(service_ip, f"{prefix}service_ip", env, p)
    return Deployment(
        kind=kind_text,  # type: ignore[arg-type]
        cluster_domain=domain,
        service_ip=ip,
        service_ip_source=ip_source,
        gke_workload_identity=boolean(gke, f"{prefix}gke_workload_identity", p, default=False),
    )


def _service_ip(
    value: object, fld: str, env: Mapping[str, str], p: Problems
) -> tuple[str | None, str]:
    ip_text = text(value, fld, p)
    if ip_text is None or ip_text.lower() == "auto":
        host = env.get("KUBERNETES_SERVICE_HOST", "").strip()
        if host:
            try:
                return str(ipaddress.ip_address(host)), "KUBERNETES_SERVICE_HOST"
            except ValueError:
                p.warn("KUBERNETES_SERVICE_HOST", f"{shown(host)} is not an IP and was not used")
        return None, "unknown"
    try:
        return str(ipaddress.ip_address(ip_text.strip("[]"))), fld
    except ValueError:
        p.error(
            fld,
            f"{shown(ip_text)} is not an IP address",
            "write the ClusterIP that `egress cluster-ip` prints, or auto",
        )
        return None, "unknown"


def _given_password(password: Secret, fld: str, p: Problems) -> Secret | None:
    """A password given directly, held to the rules of a password file: one non-empty line."""
    value = password.reveal()
    if not value:
        p.error(fld, "is empty", "type the proxy password, or clear it")
        return None
    if "\n" in value or "\r" in value:
        p.error(fld, "holds more than one line", "give only the password")
        return None
    return password
