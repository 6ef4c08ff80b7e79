"""``egress render install``: the Kubernetes objects that run egress in a cluster.

From the current settings and a few flags (:class:`InstallOptions`), one multi-document YAML:

- ConfigMap ``egress-settings`` (key ``egress.yaml``: these settings, with the file paths of the
  cluster), ConfigMap ``egress-ca`` (``ca.crt``: the proxy's CA; ``ca-bundle.crt``: public roots
  plus that CA, for the variables that *replace* the default trust), Secrets ``egress-proxy``
  (``password``) and ``egress-console`` (``admin-password``) without values unless asked;
- the console: ServiceAccount, Deployment, Service (8080), a PersistentVolumeClaim on SQLite or
  the ``egress-console-db`` Secret (``url``, operator-made) on PostgreSQL;
- the webhook: ServiceAccount, Deployment, Service (443 -> 8443), PodDisruptionBudget and the
  ``MutatingWebhookConfiguration`` ``egress-injector``;
- NetworkPolicies for egress's own pods; for each ``--inject-namespace`` the objects its pods
  mount (a pod can only mount objects of its own namespace).

Every object is built as data and written with ``yaml.safe_dump``; comments are escaped with
:func:`~egress.redact.printable`, so no value from the settings can add a line or a key.

>>> from egress.settings import Settings
>>> art = render(Settings.from_proxy("http://10.0.5.10:3128", env={}), InstallOptions())
>>> [line[6:] for line in art.text.splitlines() if line.startswith("kind: ")][:4]
['Namespace', 'ConfigMap', 'ConfigMap', 'Secret']
"""

from __future__ import annotations

import base64
import hashlib
import re
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal

import certifi
import yaml

from egress import __version__
from egress.errors import ConfigError, Problem, UsageError
from egress.redact import Secret, printable, shown
from egress.render import Artifact, RenderOptions
from egress.settings import Settings, load_settings_from_mapping
from egress.settings.fields import Problems
from egress.settings.files import CA_LIMIT, read_regular_file

__all__ = [
    "CA_BUNDLE_KEY",
    "CA_CONFIGMAP",
    "CA_KEY",
    "CA_MOUNT",
    "CONSOLE",
    "CONSOLE_DB_SECRET",
    "CONSOLE_SECRET",
    "INJECT_LABEL",
    "PROXY_SECRET",
    "SETTINGS_CONFIGMAP",
    "SETTINGS_FILE",
    "SETTINGS_MOUNT",
    "WEBHOOK",
    "WEBHOOK_CONFIGURATION",
    "WEBHOOK_TLS_SECRET",
    "InstallOptions",
    "render",
    "settings_document",
]

# -- the names the parts share (the webhook and the sources use them) ------------------------------

SETTINGS_CONFIGMAP: Final = "egress-settings"
SETTINGS_KEY: Final = "egress.yaml"
SETTINGS_MOUNT: Final = "/etc/egress/settings"
SETTINGS_FILE: Final = f"{SETTINGS_MOUNT}/{SETTINGS_KEY}"
CA_CONFIGMAP: Final = "egress-ca"
CA_KEY: Final = "ca.crt"
"""The proxy's CA alone (``NODE_EXTRA_CA_CERTS`` adds it to Node's roots)."""
CA_BUNDLE_KEY: Final = "ca-bundle.crt"
"""Public roots plus the proxy's CA (``SSL_CERT_FILE``, ``REQUESTS_CA_BUNDLE`` replace roots)."""
CA_MOUNT: Final = "/etc/egress/ca"
PROXY_SECRET: Final = "egress-proxy"
PROXY_SECRET_KEY: Final = "password"
PROXY_MOUNT: Final = "/etc/egress/proxy"
CONSOLE: Final = "egress-console"
CONSOLE_SECRET: Final = "egress-console"
CONSOLE_SECRET_KEY: Final = "admin-password"
CONSOLE_DB_SECRET: Final = "egress-console-db"
CONSOLE_DB_KEY: Final = "url"
CONSOLE_PORT: Final = 8080
CONSOLE_DATA: Final = "egress-console-data"
DATA_MOUNT: Final = "/var/lib/egress"
WEBHOOK: Final = "egress-webhook"
WEBHOOK_PORT: Final = 8443
WEBHOOK_SERVICE_PORT: Final = 443
WEBHOOK_TLS_SECRET: Final = "egress-webhook-tls"
TLS_MOUNT: Final = "/etc/egress/tls"
WEBHOOK_CONFIGURATION: Final = "egress-injector"
WEBHOOK_NAME: Final = "inject.egress.io"
WEBHOOK_PATH: Final = "/mutate"
INJECT_LABEL: Final = "egress.io/inject"
OPT_OUT_ANNOTATION: Final = "egress.io/inject"

UID: Final = 10001
"""The image's user and group (the Dockerfile's ``egress`` user)."""
DEFAULT_IMAGE: Final = f"egress:{__version__}"
STORES: Final = ("sqlite", "postgresql")
FAILURE_POLICIES: Final = ("Ignore", "Fail")
NEVER_INJECTED: Final = ("kube-system", "kube-public", "kube-node-lease")
"""Namespaces the webhook is never called for, labelled or not (nor egress's own)."""

FAILURE_POLICY_TRADE_OFF: Final = (
    "Ignore (the default): when the webhook cannot answer, pods start without the proxy "
    "settings, go direct and are dropped by the firewall, silently; Fail: pods in labelled "
    "namespaces do not start until the webhook answers (run it with two replicas, as here, "
    "and never label kube-system)."
)

LABELS: Final = {"app.kubernetes.io/name": "egress", "app.kubernetes.io/managed-by": "egress"}


@dataclass(frozen=True)
class InstallOptions:
    """The flags of ``egress render install``; the rest comes from the settings."""

    namespace: str = "egress"
    image: str = DEFAULT_IMAGE
    replicas: int = 1
    """Console replicas; more than one needs ``store="postgresql"``."""
    store: Literal["sqlite", "postgresql"] = "sqlite"
    failure_policy: Literal["Ignore", "Fail"] = "Ignore"
    inject_namespaces: tuple[str, ...] = ()
    with_secrets: bool = False
    """Write the proxy password into the ``egress-proxy`` Secrets (else they carry no value)."""
    proxy_cidr: str | None = None
    """Where the proxy is, when the settings name it by host name (for the console's policy)."""
    db_cidr: str | None = None
    db_port: int = 5432
    webhook_ca: str | None = None
    """PEM of the CA that signed ``egress-webhook-tls``, for the webhook's ``caBundle``."""
    storage: str = "1Gi"
    warnings: tuple[str, ...] = field(default=(), compare=False)


# -- egress.yaml for the cluster ------------------------------------------------------------------


def _ca_text(settings: Settings) -> str | None:
    """The proxy's CA as PEM, from ``ca_pem`` or ``ca_file`` (read again, bounded)."""
    proxy = settings.proxy
    if proxy.ca_pem:
        return proxy.ca_pem
    if proxy.ca_file:
        p = Problems()
        data = read_regular_file(
            proxy.ca_file, "proxy.ca_file", CA_LIMIT, p, fix="point it at a PEM file"
        )
        if data is None:
            raise ConfigError(p.errors)
        return data.decode("ascii", "replace")
    return None


def settings_document(settings: Settings) -> dict[str, Any]:
    """``settings`` as ``egress.yaml`` with the cluster's paths: the password from the
    ``egress-proxy`` Secret's mount, the CA from ``egress-ca``'s, the Service IP ``auto``
    unless the settings name it (every pod has ``KUBERNETES_SERVICE_HOST``)."""
    proxy = settings.proxy
    doc_proxy: dict[str, Any] = {"enabled": proxy.enabled}
    if proxy.http_proxy is not None:
        doc_proxy["url"] = str(proxy.http_proxy)
    if proxy.https_proxy is not None and proxy.https_proxy != proxy.http_proxy:
        doc_proxy["https_url"] = str(proxy.https_proxy)
    if proxy.username:
        doc_proxy["username"] = proxy.username
        doc_proxy["password_file"] = f"{PROXY_MOUNT}/{PROXY_SECRET_KEY}"
    if proxy.ca_pem or proxy.ca_file or proxy.ca_configmap:
        doc_proxy["ca_file"] = f"{CA_MOUNT}/{CA_KEY}"
    doc_proxy["verify"] = proxy.verify
    dep = settings.deployment
    service_ip = dep.service_ip if dep.service_ip_source == "deployment.service_ip" else "auto"
    return {
        "proxy": doc_proxy,
        "excluded_domains": list(settings.excluded_domains),
        "deployment": {
            "kind": dep.kind,
            "cluster_domain": dep.cluster_domain,
            "service_ip": service_ip,
            "gke_workload_identity": dep.gke_workload_identity,
        },
        "warehouses": list(settings.warehouses),
        "tunnel_tcp_warehouses": settings.tunnel_tcp_warehouses,
        "features": list(settings.features),
        "resolve": dict(settings.resolve),
        "endpoints": list(settings.endpoints),
    }


def _comparable(settings: Settings) -> Settings:
    """What must survive the trip through ``egress.yaml``: routing, not file paths."""
    proxy = replace(
        settings.proxy, password_file=None, password=None, ca_file=None, ca_pem=None,
        ca_configmap=None,
    )  # fmt: skip
    dep = settings.deployment
    if dep.service_ip_source != "deployment.service_ip":
        dep = replace(dep, service_ip=None, service_ip_source="unknown")
    return replace(settings, proxy=proxy, deployment=dep, source="", warnings=())


def _check_round_trip(settings: Settings, document: dict[str, Any]) -> None:
    """Refuse settings that ``egress.yaml`` cannot say: the pods would route otherwise."""
    probe = {**document, "proxy": dict(document["proxy"])}
    probe["proxy"].pop("password_file", None)
    probe["proxy"].pop("ca_file", None)
    password = Secret("placeholder") if settings.proxy.username else None
    try:
        loaded = load_settings_from_mapping(probe, source="install", env={}, password=password)
    except ConfigError as exc:
        problems = [
            Problem(p.field, f"cannot be written into {SETTINGS_KEY} for the cluster: {p.message}",
                    p.hint)
            for p in exc.problems
        ]  # fmt: skip
        raise ConfigError(problems) from exc
    if _comparable(loaded) != _comparable(settings):
        raise ConfigError(
            [
                Problem(
                    "proxy",
                    f"these settings cannot be written as {SETTINGS_KEY} without changing a "
                    "route (e.g. a proxy for http:// only, from HTTP_PROXY alone)",
                    "write an egress.yaml with proxy.url (and proxy.https_url) and render from "
                    "it with --config",
                )
            ]
        )


# -- building blocks ------------------------------------------------------------------------------


def _labels(component: str | None = None) -> dict[str, str]:
    labels = dict(LABELS)
    if component:
        labels["app.kubernetes.io/component"] = component
    return labels


def _selector(component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "egress", "app.kubernetes.io/component": component}


def _meta(name: str, namespace: str | None, component: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    meta["labels"] = _labels(component)
    return meta


@dataclass
class _Doc:
    comment: tuple[str, ...]
    body: dict[str, Any] | None
    """None: a comment-only document (what the operator creates)."""


def _security_context() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": UID,
        "runAsGroup": UID,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _pod_security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": UID,
        "runAsGroup": UID,
        "fsGroup": UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _probe(path: str, port: str, scheme: str, *, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": port, "scheme": scheme},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def _probes(port: str, scheme: str) -> dict[str, Any]:
    return {
        "startupProbe": _probe("/healthz", port, scheme, period=2, failures=30),
        "readinessProbe": _probe("/healthz", port, scheme, period=5, failures=2),
        "livenessProbe": _probe("/healthz", port, scheme, period=10, failures=3),
    }


def _settings_volumes(settings: Settings) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The settings, CA and (with a user name) password volumes and their mounts."""
    volumes: list[dict[str, Any]] = [
        {"name": "settings", "configMap": {"name": SETTINGS_CONFIGMAP}},
        {"name": "ca", "configMap": {"name": CA_CONFIGMAP}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "settings", "mountPath": SETTINGS_MOUNT, "readOnly": True},
        {"name": "ca", "mountPath": CA_MOUNT, "readOnly": True},
    ]
    if settings.proxy.username:
        volumes.append(
            {
                "name": "proxy-password",
                "secret": {
                    "secretName": PROXY_SECRET,
                    "items": [{"key": PROXY_SECRET_KEY, "path": PROXY_SECRET_KEY}],
                    "defaultMode": 0o440,
                },
            }
        )
        mounts.append({"name": "proxy-password", "mountPath": PROXY_MOUNT, "readOnly": True})
    volumes.append({"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}})
    mounts.append({"name": "tmp", "mountPath": "/tmp"})
    return volumes, mounts


def _pod_spec(
    account: str, container: dict[str, Any], volumes: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "serviceAccountName": account,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": _pod_security_context(),
        "containers": [container],
        "volumes": volumes,
    }


def _service_account(name: str, namespace: str, component: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta(name, namespace, component),
        "automountServiceAccountToken": False,
    }


# -- the objects ----------------------------------------------------------------------------------


class _Install:
    def __init__(self, settings: Settings, options: InstallOptions) -> None:
        self.settings = settings
        self.options = options
        self.ns = options.namespace
        self.docs: list[_Doc] = []
        self.warnings: list[str] = list(options.warnings)
        self.document = settings_document(settings)
        _check_round_trip(settings, self.document)
        self.settings_yaml = yaml.safe_dump(self.document, sort_keys=False, width=1000)
        self.digest = hashlib.sha256(self.settings_yaml.encode()).hexdigest()
        self.ca = _ca_text(settings)

    def add(self, body: dict[str, Any] | None, *comment: str) -> None:
        self.docs.append(_Doc(tuple(comment), body))

    # -- settings, trust, secrets (also in each --inject-namespace) --

    def namespace(self) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": self.ns,
                "labels": {
                    **LABELS,
                    # every pod here passes the "restricted" Pod Security Standard
                    "pod-security.kubernetes.io/enforce": "restricted",
                },
            },
        }
        self.add(
            body,
            f"egress's own namespace. Never label it {INJECT_LABEL}=enabled: the webhook is not "
            "called for it (its pods must start even when the webhook is down).",
        )

    def shared(self, namespace: str, *, own: bool) -> None:
        where = "" if own else f" A copy for the pods of {namespace}, which mount it."
        self.add(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": _meta(SETTINGS_CONFIGMAP, namespace),
                "data": {SETTINGS_KEY: self.settings_yaml},
            },
            f"The settings, from {self.settings.source}: what egress-aware components read "
            f"(EGRESS_SETTINGS_FILE={SETTINGS_FILE}, mounted as a directory so changes arrive) "
            f"and what the webhook injects.{where} Re-render and apply to change them.",
        )
        data: dict[str, str] = {}
        comment = [
            f"The proxy's CA, mounted at {CA_MOUNT}. {CA_KEY}: the CA alone, for "
            f"NODE_EXTRA_CA_CERTS (which adds it to Node's roots). {CA_BUNDLE_KEY}: the public "
            f"roots (Mozilla's, from certifi {certifi.__version__}) plus the CA, for "
            "SSL_CERT_FILE and REQUESTS_CA_BUNDLE, which REPLACE the default roots; re-render "
            "to refresh the roots." + where
        ]
        if self.ca is not None:
            data[CA_KEY] = self.ca if self.ca.endswith("\n") else self.ca + "\n"
            data[CA_BUNDLE_KEY] = _public_roots() + data[CA_KEY]
        elif self.settings.proxy.ca_configmap is not None:
            name, key = self.settings.proxy.ca_configmap
            comment.append(
                f"The settings take the CA from the ConfigMap {name} (key {key}), which this "
                f"command cannot read: copy it into {CA_KEY} and {CA_BUNDLE_KEY} here."
            )
            if own:
                self.warnings.append(
                    f"the proxy's CA is in the ConfigMap {printable(name)} (key "
                    f"{printable(key)}), which egress cannot read here: copy it into "
                    f"{CA_CONFIGMAP} (keys {CA_KEY} and {CA_BUNDLE_KEY}) before applying"
                )
        else:
            comment.append("No custom CA is configured, so it is empty: pods keep their roots.")
        self.add(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": _meta(CA_CONFIGMAP, namespace),
                "data": data,
            },
            *comment,
        )
        self.proxy_secret(namespace)

    def proxy_secret(self, namespace: str) -> None:
        proxy = self.settings.proxy
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": _meta(PROXY_SECRET, namespace),
            "type": "Opaque",
        }
        if not proxy.username:
            self.add(
                body,
                f"The proxy password (key {PROXY_SECRET_KEY}): none is needed, the settings "
                "name no proxy user. Kept so that adding one later needs no new object.",
            )
            return
        if self.options.with_secrets and proxy.password is not None:
            body["stringData"] = {PROXY_SECRET_KEY: proxy.password.reveal()}
            self.add(
                body,
                f"The proxy password of {proxy.username} (--with-secrets): keep this file out of "
                "version control.",
            )
            return
        self.add(
            body,
            f"The proxy password of {proxy.username}, key {PROXY_SECRET_KEY}: no value here "
            "(--with-secrets writes it), so applying this file never resets it. Set it with:",
            f"  kubectl -n {namespace} create secret generic {PROXY_SECRET} "
            f"--from-file={PROXY_SECRET_KEY}=./proxy-password --dry-run=client -o yaml | "
            "kubectl apply --server-side --field-manager=egress-operator -f -",
            "Placeholder of the value:",
            "  stringData:",
            f'    {PROXY_SECRET_KEY}: ""',
        )

    # -- console --

    def console(self) -> None:
        o = self.options
        self.add(
            _service_account(CONSOLE, self.ns, "console"),
            "No Role and no RoleBinding: the console keeps its state in its store and never "
            "calls the Kubernetes API, so its ServiceAccount gets no token.",
        )
        self.add(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": _meta(CONSOLE_SECRET, self.ns, "console"),
                "type": "Opaque",
            },
            f"The console's admin password, key {CONSOLE_SECRET_KEY}, read on the first start "
            "(EGRESS_ADMIN_PASSWORD); the console does not start without it. No value here, so "
            "applying this file never resets it. Set it with:",
            f"  kubectl -n {self.ns} create secret generic {CONSOLE_SECRET} "
            f'--from-literal={CONSOLE_SECRET_KEY}="$(openssl rand -base64 24)" '
            "--dry-run=client -o yaml | kubectl apply --server-side "
            "--field-manager=egress-operator -f -",
            "Placeholder of the value:",
            "  stringData:",
            f'    {CONSOLE_SECRET_KEY}: ""',
        )
        volumes, mounts = _settings_volumes(self.settings)
        env: list[dict[str, Any]] = [
            {
                "name": "EGRESS_ADMIN_PASSWORD",
                "valueFrom": {"secretKeyRef": {"name": CONSOLE_SECRET, "key": CONSOLE_SECRET_KEY}},
            }
        ]
        db: str | None = None
        if o.store == "sqlite":
            db = f"sqlite:///{DATA_MOUNT}/egress.db"
            volumes.insert(
                0, {"name": "data", "persistentVolumeClaim": {"claimName": CONSOLE_DATA}}
            )
            mounts.insert(0, {"name": "data", "mountPath": DATA_MOUNT})
            self.add(
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "metadata": _meta(CONSOLE_DATA, self.ns, "console"),
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": o.storage}},
                    },
                },
                "The console's SQLite store (one replica). The cluster's default StorageClass "
                "provides it; add spec.storageClassName to choose another.",
            )
        else:
            # the console reads EGRESS_CONSOLE_DB itself: the URL and its password stay out of argv
            env.append(
                {
                    "name": "EGRESS_CONSOLE_DB",
                    "valueFrom": {
                        "secretKeyRef": {"name": CONSOLE_DB_SECRET, "key": CONSOLE_DB_KEY}
                    },
                }
            )
            self.add(
                None,
                f"The PostgreSQL store: the operator creates the Secret {CONSOLE_DB_SECRET} "
                f"(key {CONSOLE_DB_KEY}); this command never writes a database password:",
                f"  kubectl -n {self.ns} create secret generic {CONSOLE_DB_SECRET} "
                f"--from-file={CONSOLE_DB_KEY}=./console-db-url   # postgresql://USER:PASSWORD@HOST:5432/DB",
                "apiVersion: v1",
                "kind: Secret",
                "metadata:",
                f"  name: {CONSOLE_DB_SECRET}",
                f"  namespace: {self.ns}",
                "type: Opaque",
                "stringData:",
                f'  {CONSOLE_DB_KEY}: "postgresql://USER:PASSWORD@HOST:5432/DBNAME"',
            )
        args = [
            "console",
            "--host",
            "0.0.0.0",
            "--port",
            str(CONSOLE_PORT),
            *(["--db", db] if db is not None else []),
            "--import",
            SETTINGS_FILE,
        ]
        container = {
            "name": "console",
            "image": o.image,
            "imagePullPolicy": "IfNotPresent",
            "args": args,
            "ports": [{"name": "http", "containerPort": CONSOLE_PORT, "protocol": "TCP"}],
            "env": env,
            **_probes("http", "HTTP"),
            "resources": {
                "requests": {"cpu": "50m", "memory": "128Mi"},
                "limits": {"cpu": "1", "memory": "512Mi"},
            },
            "securityContext": _security_context(),
            "volumeMounts": mounts,
        }
        spec: dict[str, Any] = {
            "replicas": o.replicas,
            "selector": {"matchLabels": _selector("console")},
        }
        if o.store == "sqlite":
            spec["strategy"] = {"type": "Recreate"}
        spec["template"] = {
            "metadata": {
                "labels": _labels("console"),
                "annotations": {"egress.dev/settings-sha256": self.digest},
            },
            "spec": _pod_spec(CONSOLE, container, volumes),
        }
        if o.replicas > 1:
            spec["template"]["spec"]["affinity"] = _spread("console")
        store = (
            "one replica on SQLite (strategy Recreate: two pods never open the file at once)"
            if o.store == "sqlite"
            else f"{o.replicas} replica{'s' if o.replicas > 1 else ''} on PostgreSQL "
            f"({CONSOLE_DB_SECRET})"
        )
        self.add(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": _meta(CONSOLE, self.ns, "console"),
                "spec": spec,
            },
            f"The admin console: {store}. It listens on the pod's address (--host 0.0.0.0) and "
            f"imports {SETTINGS_FILE} on its first start only; after that the store holds the "
            "settings.",
        )
        self.add(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": _meta(CONSOLE, self.ns, "console"),
                "spec": {
                    "type": "ClusterIP",
                    "selector": _selector("console"),
                    "ports": [
                        {
                            "name": "http",
                            "port": CONSOLE_PORT,
                            "targetPort": "http",
                            "protocol": "TCP",
                        }
                    ],
                },
            },
            "The console inside the cluster. Publish it through your ingress controller with "
            "TLS (and allow that controller in the egress-console NetworkPolicy), or use "
            f"kubectl -n {self.ns} port-forward svc/{CONSOLE} {CONSOLE_PORT}.",
        )
        if o.replicas > 1:
            self.add(_pdb(CONSOLE, self.ns, "console"), "Keep one console up during node drains.")

    # -- webhook --

    def webhook(self) -> None:
        o = self.options
        self.add(
            _service_account(WEBHOOK, self.ns, "webhook"),
            "No Role and no RoleBinding: the API server calls the webhook, the webhook never "
            "calls the API server (the pod under review comes in the request), so its "
            "ServiceAccount gets no token.",
        )
        self.add(
            None,
            f"The webhook's TLS Secret {WEBHOOK_TLS_SECRET} (type kubernetes.io/tls, keys "
            f"tls.crt and tls.key) for the name {WEBHOOK}.{self.ns}.svc, made by the operator:",
            f"- with cert-manager: a Certificate named {WEBHOOK_TLS_SECRET} with that "
            f"secretName and dnsNames [{WEBHOOK}.{self.ns}.svc]; the annotation "
            f"cert-manager.io/inject-ca-from on {WEBHOOK_CONFIGURATION} has cert-manager's "
            "cainjector fill its caBundle;",
            "- or with openssl (README, 'Install on Kubernetes'): make a CA and a certificate, "
            f"kubectl -n {self.ns} create secret tls {WEBHOOK_TLS_SECRET} --cert=tls.crt "
            "--key=tls.key, and render again with --webhook-ca-file ca.crt for the caBundle.",
        )
        volumes, mounts = _settings_volumes(self.settings)
        volumes.insert(
            0, {"name": "tls", "secret": {"secretName": WEBHOOK_TLS_SECRET, "defaultMode": 0o440}}
        )
        mounts.insert(0, {"name": "tls", "mountPath": TLS_MOUNT, "readOnly": True})
        container = {
            "name": "webhook",
            "image": o.image,
            "imagePullPolicy": "IfNotPresent",
            "args": [
                "webhook",
                "--config",
                SETTINGS_FILE,
                "--tls-cert",
                f"{TLS_MOUNT}/tls.crt",
                "--tls-key",
                f"{TLS_MOUNT}/tls.key",
                "--host",
                "0.0.0.0",
                "--port",
                str(WEBHOOK_PORT),
            ],
            "ports": [{"name": "https", "containerPort": WEBHOOK_PORT, "protocol": "TCP"}],
            **_probes("https", "HTTPS"),
            "resources": {
                "requests": {"cpu": "50m", "memory": "96Mi"},
                "limits": {"cpu": "500m", "memory": "256Mi"},
            },
            "securityContext": _security_context(),
            "volumeMounts": mounts,
        }
        pod = _pod_spec(WEBHOOK, container, volumes)
        pod["affinity"] = _spread("webhook")
        self.add(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": _meta(WEBHOOK, self.ns, "webhook"),
                "spec": {
                    "replicas": 2,
                    "selector": {"matchLabels": _selector("webhook")},
                    "template": {
                        "metadata": {
                            "labels": _labels("webhook"),
                            "annotations": {"egress.dev/settings-sha256": self.digest},
                        },
                        "spec": pod,
                    },
                },
            },
            "The admission webhook: two replicas on different nodes, so a drain or a crash does "
            "not leave pods without their proxy settings (or, with failurePolicy Fail, "
            "without a start).",
            *(
                (
                    f"It mounts {PROXY_SECRET} only because {SETTINGS_KEY} names the password "
                    "file; it never writes the password into a pod (pods get it through "
                    "secretKeyRef).",
                )
                if self.settings.proxy.username
                else ()
            ),
        )
        self.add(_pdb(WEBHOOK, self.ns, "webhook"), "Keep one webhook up during node drains.")
        self.add(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": _meta(WEBHOOK, self.ns, "webhook"),
                "spec": {
                    "type": "ClusterIP",
                    "selector": _selector("webhook"),
                    "ports": [
                        {
                            "name": "https",
                            "port": WEBHOOK_SERVICE_PORT,
                            "targetPort": "https",
                            "protocol": "TCP",
                        }
                    ],
                },
            },
            f"The API server calls the webhook here: port {WEBHOOK_SERVICE_PORT} -> "
            f"{WEBHOOK_PORT}.",
        )
        self.configuration()

    def configuration(self) -> None:
        o = self.options
        client: dict[str, Any] = {
            "service": {
                "namespace": self.ns,
                "name": WEBHOOK,
                "path": WEBHOOK_PATH,
                "port": WEBHOOK_SERVICE_PORT,
            }
        }
        metadata = _meta(WEBHOOK_CONFIGURATION, None, "webhook")
        if o.webhook_ca is not None:
            client["caBundle"] = base64.b64encode(o.webhook_ca.encode()).decode()
            ca_note = "caBundle: the CA given with --webhook-ca-file."
        else:
            metadata["annotations"] = {
                "cert-manager.io/inject-ca-from": f"{self.ns}/{WEBHOOK_TLS_SECRET}"
            }
            ca_note = (
                "caBundle: placeholder, not set. cert-manager's cainjector fills it from the "
                f"Certificate {self.ns}/{WEBHOOK_TLS_SECRET} (the annotation in metadata); without "
                "cert-manager render again with --webhook-ca-file ca.crt. Until it is set the API "
                "server cannot trust the webhook. (Argo CD: ignoreDifferences on caBundle when "
                "cainjector fills it.)"
            )
            self.warnings.append(
                f"the {WEBHOOK_CONFIGURATION} caBundle is not set: use cert-manager (the "
                "annotation is rendered) or render again with --webhook-ca-file ca.crt"
            )
        never = [self.ns, *NEVER_INJECTED]
        hook = {
            "name": WEBHOOK_NAME,
            "admissionReviewVersions": ["v1"],
            "clientConfig": client,
            "rules": [
                {
                    "operations": ["CREATE"],
                    "apiGroups": [""],
                    "apiVersions": ["v1"],
                    "resources": ["pods"],
                    "scope": "Namespaced",
                }
            ],
            "namespaceSelector": {
                "matchLabels": {INJECT_LABEL: "enabled"},
                "matchExpressions": [
                    {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": never}
                ],
            },
            "matchConditions": [
                {
                    "name": "not-opted-out",
                    "expression": (
                        "!has(object.metadata.annotations) || "
                        f"!('{OPT_OUT_ANNOTATION}' in object.metadata.annotations) || "
                        f"object.metadata.annotations['{OPT_OUT_ANNOTATION}'] != 'false'"
                    ),
                }
            ],
            "failurePolicy": o.failure_policy,
            "matchPolicy": "Equivalent",
            "reinvocationPolicy": "IfNeeded",
            "sideEffects": "None",
            "timeoutSeconds": 5,
        }
        self.add(
            {
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "MutatingWebhookConfiguration",
                "metadata": metadata,
                "webhooks": [hook],
            },
            f"Pods created in namespaces labelled {INJECT_LABEL}=enabled go to the webhook "
            f'(never {", ".join(never)}); a pod annotated {OPT_OUT_ANNOTATION}: "false" is '
            "skipped before the call.",
            f"failurePolicy {o.failure_policy}. {FAILURE_POLICY_TRADE_OFF}",
            "reinvocationPolicy IfNeeded: called again after later webhooks add containers; "
            "the webhook adds only what is missing, so a second call changes nothing.",
            ca_note,
        )

    # -- network policies --

    def network_policies(self) -> None:
        from egress.render import networkpolicy

        o = self.options
        settings = self.settings
        router = settings.with_enabled(True).router() if settings.proxy.configured else None
        # the same rules `render networkpolicy` writes for DNS and the proxy, asked of the router
        builder = networkpolicy._Builder(
            settings,
            router or settings.router(),
            RenderOptions(proxy_cidr=o.proxy_cidr, namespace=self.ns),
            _selector("console"),
            False,
        )
        builder.dns()
        builder.proxy()
        self.warnings += builder.warnings
        egress_rules: list[Any] = []
        notes: list[str] = []
        for policy in builder.policies:
            egress_rules += policy.body["spec"]["egress"]
            notes.append(f"{policy.rule}: {policy.comment[-1]}")
        if o.store == "postgresql":
            if o.db_cidr is not None:
                egress_rules.append(
                    {
                        "to": [{"ipBlock": {"cidr": o.db_cidr}}],
                        "ports": [{"protocol": "TCP", "port": o.db_port}],
                    }
                )
                notes.append(f"store: PostgreSQL at {o.db_cidr} TCP {o.db_port}.")
            else:
                self.warnings.append(
                    "the console's NetworkPolicy does not allow its PostgreSQL store: give "
                    "--db-cidr (e.g. --db-cidr 10.20.0.5/32) and --db-port if not 5432"
                )
        self.add(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": _meta(CONSOLE, self.ns, "console"),
                "spec": {
                    "podSelector": {"matchLabels": _selector("console")},
                    "policyTypes": ["Ingress", "Egress"],
                    "ingress": [
                        {
                            "from": [{"podSelector": {}}],
                            "ports": [{"protocol": "TCP", "port": CONSOLE_PORT}],
                        }
                    ],
                    "egress": egress_rules,
                },
            },
            f"The console: reached from pods of {self.ns} on {CONSOLE_PORT}. To publish it "
            "through an ingress controller, add its namespace to ingress[0].from, e.g. "
            "{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: ingress-nginx}}}; "
            "likewise the namespaces of components that poll it (ConsoleSource).",
            "It reaches only DNS, the proxy and its store: " + " ".join(notes),
            "Its preflight (Checks page) of destinations that go direct is denied here; run "
            "`egress check` from a platform pod for those.",
        )
        self.add(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": _meta(WEBHOOK, self.ns, "webhook"),
                "spec": {
                    "podSelector": {"matchLabels": _selector("webhook")},
                    "policyTypes": ["Ingress", "Egress"],
                    "ingress": [{"ports": [{"protocol": "TCP", "port": WEBHOOK_PORT}]}],
                    "egress": [],
                },
            },
            f"The webhook: reached on {WEBHOOK_PORT} from anywhere, because the API server "
            "calls from an address no selector names (often the control plane's or a node's); "
            "it opens no connection itself, so every egress is denied.",
        )

    def build(self) -> list[_Doc]:
        o = self.options
        self.namespace()
        self.shared(self.ns, own=True)
        self.console()
        self.webhook()
        self.network_policies()
        for namespace in o.inject_namespaces:
            self.shared(namespace, own=False)
        if self.settings.deployment.kind != "kubernetes":
            self.warnings.append(
                f"deployment.kind is {self.settings.deployment.kind}: in the cluster the "
                "automatic exclusions of cluster names and the Kubernetes API are off, so "
                "in-cluster traffic goes to the proxy; set deployment.kind: kubernetes"
            )
        if not self.settings.proxy.configured:
            self.warnings.append(
                "no proxy is configured, so the webhook has no proxy to inject and every pod goes "
                "direct"
            )
        if o.failure_policy == "Fail":
            self.warnings.append(
                "failurePolicy Fail: pods in labelled namespaces do not start while the webhook "
                "is down or its caBundle is wrong"
            )
        return self.docs


def _spread(component: str) -> dict[str, Any]:
    return {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {"matchLabels": _selector(component)},
                    },
                }
            ]
        }
    }


def _pdb(name: str, namespace: str, component: str) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(name, namespace, component),
        "spec": {"minAvailable": 1, "selector": {"matchLabels": _selector(component)}},
    }


_PEM_BLOCK = re.compile(r"-----BEGIN CERTIFICATE-----\r?\n.*?-----END CERTIFICATE-----", re.S)


def _public_roots() -> str:
    """Mozilla's roots as shipped by certifi, PEM blocks only (comments dropped: smaller)."""
    with open(certifi.where(), encoding="ascii") as fh:
        text = fh.read()
    return "".join(block + "\n" for block in _PEM_BLOCK.findall(text))


class _Dumper(yaml.SafeDumper):
    """``yaml.SafeDumper`` that writes a multi-line string as a literal block (``|``) when
    YAML can hold it so; PyYAML falls back to a quoted scalar when it cannot."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def _dump(body: dict[str, Any]) -> str:
    return yaml.dump(body, Dumper=_Dumper, sort_keys=False, width=1000).rstrip()


def _comment(lines: Iterable[str]) -> list[str]:
    """Comment lines, wrapped; each line escaped so no value can end the comment."""
    out: list[str] = []
    for line in lines:
        line = printable(line)
        if line.startswith("  "):
            out.append(line)
        else:
            out += textwrap.wrap(line, width=96, break_on_hyphens=False) or [""]
    return [f"# {line}".rstrip() for line in out]


def _header(settings: Settings, options: InstallOptions) -> list[str]:
    return [
        "egress render install: the objects that run egress in a cluster.",
        f"Rendered from {settings.source} for the namespace {options.namespace}, image "
        f"{options.image}, console store {options.store}, failurePolicy "
        f"{options.failure_policy}.",
        "Apply with: kubectl apply --server-side -f FILE (server-side: the Secrets you set "
        "keep their values when this file is applied again, and the CA bundle is too big for "
        "client-side apply's annotation). Then set the Secrets below, and label the "
        f"namespaces to inject: kubectl label namespace NS {INJECT_LABEL}=enabled",
    ]


def check_options(options: InstallOptions) -> None:
    """Refuse flags that cannot make a working install (a usage error, one sentence)."""
    if options.replicas < 1:
        raise UsageError(f"--replicas {options.replicas} is not a number of pods; give 1 or more")
    if options.replicas > 1 and options.store == "sqlite":
        raise UsageError(
            f"--replicas {options.replicas} needs --store postgresql: the SQLite store is one "
            "file on one volume, for one console"
        )
    if options.db_cidr is not None and options.store != "postgresql":
        raise UsageError("--db-cidr applies only to --store postgresql")
    for namespace in options.inject_namespaces:
        if namespace == options.namespace or namespace in NEVER_INJECTED:
            raise UsageError(
                f"--inject-namespace {shown(namespace)} is a namespace the webhook is never "
                f"called for ({', '.join([options.namespace, *NEVER_INJECTED])}); name the "
                "platform's namespaces"
            )


def render(settings: Settings, options: InstallOptions) -> Artifact:
    """The multi-document YAML of the install, and what the operator must still do."""
    check_options(options)
    install = _Install(settings, options)
    docs = install.build()
    lines = _comment(_header(settings, options))
    pending: list[str] = []  # a comment-only document goes before the next object
    for doc in docs:
        if doc.body is None:
            pending += [*_comment(doc.comment), "#"]
            continue
        lines.append("---")
        lines += pending + _comment(doc.comment)
        pending = []
        lines.append(_dump(doc.body))
    lines += pending
    return Artifact("\n".join(lines) + "\n", tuple(_unique(install.warnings)))


def _unique(items: Sequence[str]) -> list[str]:
    seen: list[str] = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen
