"""The admission webhook's decisions: an AdmissionReview v1 in, the AdmissionReview answer out.

Pure functions, no I/O: :func:`plan` turns the settings into what every container gets (once per
settings version); :func:`admit` answers one review with a JSONPatch (RFC 6902) that adds it.

What a container gets (the env entries in this order, so ``$(EGRESS_PROXY_PASSWORD)`` is defined
before the proxy URLs that use it; Kubernetes expands ``$(VAR)`` only from earlier entries):

- with ``proxy.username``: ``EGRESS_PROXY_PASSWORD`` from Secret ``egress-proxy`` key ``password``
  (``valueFrom.secretKeyRef``; the password is never in the pod spec), and the proxy URLs as
  ``http://user:$(EGRESS_PROXY_PASSWORD)@proxy:3128``. Kubernetes pastes the Secret's value into
  the URL as it is, so the value must be URL-safe (or stored percent-encoded);
- every variable of ``egress render env`` (:func:`egress.render.env.environment`: HTTP(S)_PROXY,
  GRPC_PROXY, NO_PROXY in both cases, NODE_USE_ENV_PROXY, and with a CA configured
  NODE_EXTRA_CA_CERTS, SSL_CERT_FILE, REQUESTS_CA_BUNDLE), spelled exactly as it spells them;
- ``EGRESS_SETTINGS_FILE``, and the mounts: ConfigMap ``egress-settings`` at
  ``/etc/egress/settings``, ConfigMap ``egress-ca`` at ``/etc/egress/ca`` (no subPath, so
  kubelet updates the files): key ``ca.crt`` (the CA alone, for Node's NODE_EXTRA_CA_CERTS) as
  ``custom-ca.pem`` and key ``ca-bundle.crt`` (the system roots plus the CA, for SSL_CERT_FILE
  and REQUESTS_CA_BUNDLE, which *replace* the roots) as ``ca-bundle.pem``; and with
  a username Secret ``egress-proxy`` at ``/etc/egress/proxy`` (``password_file`` of
  ``egress.yaml`` for egress-aware components).

Rules (README, "Admission webhook"): every container and init container, each checked on its own,
so a sidecar added by a later webhook is injected on reinvocation while a pod admitted twice gets
no patch. Ephemeral containers are not touched: they are added later through the
``pods/ephemeralcontainers`` subresource, which the webhook is not registered for. A container's
own value wins, with a warning naming container and variable, unless the pod is annotated
``egress.io/override: "true"``; the proxy variables are a unit (a container that sets any of
them keeps all of its own and gets none of egress's: mixing two proxy setups routes differently
per runtime). ``egress.io/inject: "false"`` opts a pod out.

An answer is always ``allowed: true``: the webhook adds, it never refuses a pod. A body that is
not an AdmissionReview v1 with a request uid cannot be answered at all (:class:`BadReview`, a
400/413 from the server); the API server then applies the webhook's ``failurePolicy`` (Ignore:
the pod starts without the proxy; Fail: it is refused), the operator's documented choice.
A review it can read but has nothing to do for (another kind, an UPDATE, an object that is not a
Pod) is allowed unchanged with a warning saying why.

>>> from egress.settings import Settings
>>> p = plan(Settings.from_proxy("http://proxy:3128", env={}), "v1")
>>> [e["name"] for e in p.env][:3]
['HTTP_PROXY', 'http_proxy', 'HTTPS_PROXY']
>>> json_pointer("metadata", "annotations", "egress.io/injected")
'/metadata/annotations/egress.io~1injected'
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote

from egress.redact import printable, shown
from egress.render.env import CA_BUNDLE_PATH, CUSTOM_CA_PATH, environment, proxy_url_with
from egress.settings import Settings

__all__ = [
    "CA_BUNDLE_KEY",
    "CA_CONFIGMAP",
    "CA_DIR",
    "CA_KEY",
    "INJECTED_ANNOTATION",
    "INJECT_ANNOTATION",
    "MAX_BODY",
    "NAMESPACE_LABEL",
    "OVERRIDE_ANNOTATION",
    "PASSWORD_DIR",
    "PASSWORD_KEY",
    "PASSWORD_VARIABLE",
    "PROXY_SECRET",
    "SETTINGS_CONFIGMAP",
    "SETTINGS_DIR",
    "SETTINGS_KEY",
    "SETTINGS_VARIABLE",
    "Admission",
    "BadReview",
    "Plan",
    "admit",
    "answer",
    "json_pointer",
    "parse_review",
    "plan",
]

REVIEW_VERSION: Final = "admission.k8s.io/v1"
NAMESPACE_LABEL: Final = "egress.io/inject"
"""The namespace label (value ``enabled``) the MutatingWebhookConfiguration selects on."""
INJECT_ANNOTATION: Final = "egress.io/inject"
"""Pod annotation; ``"false"`` opts the pod out."""
OVERRIDE_ANNOTATION: Final = "egress.io/override"
"""Pod annotation; ``"true"``: egress's values replace the container's own."""
INJECTED_ANNOTATION: Final = "egress.io/injected"
"""Set on an injected pod to the settings version it was injected from (an audit mark)."""

PROXY_SECRET: Final = "egress-proxy"
PASSWORD_KEY: Final = "password"
PASSWORD_VARIABLE: Final = "EGRESS_PROXY_PASSWORD"
PASSWORD_DIR: Final = "/etc/egress/proxy"
"""Where Secret ``egress-proxy`` is mounted, so ``password_file: /etc/egress/proxy/password`` in
``egress.yaml`` resolves in every injected pod (an egress-aware component reads the file)."""
CA_CONFIGMAP: Final = "egress-ca"
CA_KEY: Final = "ca.crt"
"""The proxy's CA alone (NODE_EXTRA_CA_CERTS adds it to Node's roots)."""
CA_BUNDLE_KEY: Final = "ca-bundle.crt"
"""System roots plus the proxy's CA (SSL_CERT_FILE and REQUESTS_CA_BUNDLE replace the roots)."""
CA_DIR: Final = os.path.dirname(CUSTOM_CA_PATH)
"""``/etc/egress/ca``: key ``ca.crt`` appears as ``custom-ca.pem``, ``ca-bundle.crt`` as
``ca-bundle.pem``, the paths ``egress render env`` names."""
SETTINGS_CONFIGMAP: Final = "egress-settings"
SETTINGS_KEY: Final = "egress.yaml"
SETTINGS_DIR: Final = "/etc/egress/settings"
SETTINGS_VARIABLE: Final = "EGRESS_SETTINGS_FILE"

MAX_BODY: Final = 3 * 1024 * 1024
"""The largest request body read (the API server's own request limit is 3 MiB)."""
MAX_WARNINGS: Final = 20
WARNING_LIMIT: Final = 250
"""Kubernetes may cut warnings over 256 characters, and many of them."""

PROXY_FAMILY: Final = frozenset(
    spelling
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "GRPC_PROXY", "NO_PROXY", "ALL_PROXY")
    for spelling in (name, name.lower())
) | {PASSWORD_VARIABLE}
"""Variables that configure the proxy together: a container setting one keeps all its own."""
URL_SAFE: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


class BadReview(Exception):
    """A body that cannot be answered as an AdmissionReview (no uid to answer to)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Plan:
    """What every container gets, from one settings version."""

    version: str
    env: tuple[dict[str, Any], ...]
    volumes: tuple[dict[str, Any], ...]
    mounts: tuple[dict[str, Any], ...]
    warnings: tuple[str, ...] = ()
    """Said with every injection (e.g. a password Kubernetes cannot paste into a URL)."""
    notes: tuple[str, ...] = ()
    """Said once, when the settings are loaded (the server logs them)."""
    needs: tuple[str | None, ...] = ()
    """Per env entry: the mount path its file lies under (given only where that is mounted)."""
    encoded: Mapping[int, str] = field(default_factory=dict, repr=False, compare=False)
    """The JSON of each env entry, volume and mount above, by ``id``, made once per plan."""


@dataclass(frozen=True)
class Admission:
    """One answer: the AdmissionReview to send, and what it did (for the server's log)."""

    review: dict[str, Any]
    patch: list[dict[str, Any]] = field(default_factory=list)
    pod: str = ""
    dry_run: bool = False


def json_pointer(*parts: str | int) -> str:
    """An RFC 6901 pointer: ``~`` is written ``~0`` and ``/`` is written ``~1`` in each part."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def plan(settings: Settings, version: str) -> Plan:
    """The env entries, volumes and mounts for ``settings``, asked of ``render env``."""
    proxy = settings.proxy
    env_file = environment(settings)  # the CA paths are its CUSTOM_CA_PATH, CA_BUNDLE_PATH
    variables = [v for section in env_file.sections for v in section.variables]
    username = proxy.username if proxy.enabled and proxy.configured else None
    env: list[dict[str, Any]] = []
    warnings: list[str] = []
    notes: list[str] = [*env_file.warnings]
    volumes = [{"name": SETTINGS_CONFIGMAP, "configMap": {"name": SETTINGS_CONFIGMAP}}]
    mounts = [{"name": SETTINGS_CONFIGMAP, "mountPath": SETTINGS_DIR, "readOnly": True}]
    if username:
        volumes.append(
            {
                "name": PROXY_SECRET,
                "secret": {
                    "secretName": PROXY_SECRET,
                    "items": [{"key": PASSWORD_KEY, "path": PASSWORD_KEY}],
                },
            }
        )
        mounts.append({"name": PROXY_SECRET, "mountPath": PASSWORD_DIR, "readOnly": True})
        if proxy.password_file != f"{PASSWORD_DIR}/{PASSWORD_KEY}":
            notes.append(
                f"proxy.password_file is {shown(proxy.password_file)}, but injected pods find "
                f"the password at {PASSWORD_DIR}/{PASSWORD_KEY}: set that path in "
                f"{SETTINGS_CONFIGMAP} so egress-aware components can read it"
            )
        env.append(
            {
                "name": PASSWORD_VARIABLE,
                "valueFrom": {"secretKeyRef": {"name": PROXY_SECRET, "key": PASSWORD_KEY}},
            }
        )
        if proxy.password is not None and not set(proxy.password.reveal()) <= URL_SAFE:
            warnings.append(
                f"the proxy password has characters a URL cannot hold as they are: Secret "
                f"{PROXY_SECRET} key {PASSWORD_KEY} must hold it percent-encoded, or choose "
                "one of letters, digits and -._~"
            )
    reference = f"$({PASSWORD_VARIABLE})"
    for var in variables:
        if username and var.url is not None:
            env.append({"name": var.name, "value": proxy_url_with(var.url, username, reference)})
        else:
            env.append({"name": var.name, "value": var.value})
    env.append({"name": SETTINGS_VARIABLE, "value": f"{SETTINGS_DIR}/{SETTINGS_KEY}"})
    if any(v.name == "SSL_CERT_FILE" for v in variables):
        items = [
            {"key": CA_KEY, "path": os.path.basename(CUSTOM_CA_PATH)},
            {"key": CA_BUNDLE_KEY, "path": os.path.basename(CA_BUNDLE_PATH)},
        ]
        volumes.append({"name": CA_CONFIGMAP, "configMap": {"name": CA_CONFIGMAP, "items": items}})
        mounts.append({"name": CA_CONFIGMAP, "mountPath": CA_DIR, "readOnly": True})
    return Plan(
        version,
        tuple(env),
        tuple(volumes),
        tuple(mounts),
        tuple(warnings),
        tuple(notes),
        tuple(_mount_needed(e) for e in env),
        {
            id(entry): json.dumps(entry, separators=(",", ":"))
            for entry in (*env, *volumes, *mounts)
        },
    )


# -- reading a review ----------------------------------------------------------------------------


def parse_review(raw: bytes) -> tuple[dict[str, Any], str]:
    """The review and its request uid, or :class:`BadReview` saying what is wrong with it."""
    if len(raw) > MAX_BODY:
        raise BadReview(
            f"the body is {len(raw)} bytes, more than the {MAX_BODY} an AdmissionReview may have",
            413,
        )
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise BadReview("the body is not JSON; send an AdmissionReview v1 as JSON") from None
    if not isinstance(body, dict):
        raise BadReview("the body is not a JSON object; send an AdmissionReview v1")
    api_version, kind = body.get("apiVersion"), body.get("kind")
    if kind != "AdmissionReview" or api_version != REVIEW_VERSION:
        raise BadReview(
            f"the body is {shown(api_version)} {shown(kind)}, not {REVIEW_VERSION} "
            "AdmissionReview; list only v1 in the webhook's admissionReviewVersions"
        )
    request = body.get("request")
    if not isinstance(request, dict):
        raise BadReview("the AdmissionReview has no request object")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid or len(uid) > 256:
        raise BadReview("the AdmissionReview's request has no uid to answer to")
    return body, uid


def answer(raw: bytes, the_plan: Plan) -> Admission:
    """:func:`admit` on a raw body; :class:`BadReview` when it cannot be answered."""
    body, _ = parse_review(raw)
    return admit(body, the_plan)


class _Shown:
    """A value quoted by :func:`shown` only when a message is really made of it."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value

    def __format__(self, spec: str) -> str:
        return shown(self.value)


def _encoded(value: object, cache: Mapping[int, str]) -> str:
    """``value`` as compact JSON; the plan's own entries come ready-made from ``cache``."""
    ready = cache.get(id(value))
    if ready is not None:
        return ready
    if isinstance(value, list):
        return "[" + ",".join(_encoded(v, cache) for v in value) + "]"
    return json.dumps(value, separators=(",", ":"))


def _string(text: str) -> str:
    """A JSON string; the paths built here (fixed names, indexes) need no escaping."""
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'
    return json.dumps(text)


def _patch_text(ops: Sequence[Mapping[str, Any]], cache: Mapping[int, str]) -> str:
    """The JSONPatch document: what ``json.dumps(ops)`` gives, without encoding the plan's
    entries again for every container of every pod."""
    parts = []
    for op in ops:
        text = f'{{"op":"{op["op"]}","path":{_string(op["path"])}'
        if "value" in op:
            text += f',"value":{_encoded(op["value"], cache)}'
        parts.append(text + "}")
    return "[" + ",".join(parts) + "]"


def _response(
    uid: str,
    ops: Sequence[Mapping[str, Any]],
    warnings: Sequence[str],
    cache: Mapping[int, str] | None = None,
) -> dict[str, Any]:
    response: dict[str, Any] = {"uid": uid, "allowed": True}
    if ops:
        patch = _patch_text(ops, cache or {}).encode()
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(patch).decode("ascii")
    said = [_bounded(w) for w in dict.fromkeys(warnings)]
    if len(said) > MAX_WARNINGS:
        said = [*said[: MAX_WARNINGS - 1], f"and {len(said) - MAX_WARNINGS + 1} more warnings"]
    if said:
        response["warnings"] = said
    return {"apiVersion": REVIEW_VERSION, "kind": "AdmissionReview", "response": response}


def _bounded(text: str) -> str:
    text = "egress: " + printable(text)
    return text if len(text) <= WARNING_LIMIT else text[: WARNING_LIMIT - 3] + "..."


def admit(review: Mapping[str, Any], the_plan: Plan) -> Admission:
    """The answer to one AdmissionReview v1 (already checked by :func:`parse_review`)."""
    request = review["request"]
    uid: str = request["uid"]
    dry_run = request.get("dryRun") is True
    kind = request.get("kind")
    resource = request.get("resource")
    is_pod = (
        isinstance(kind, dict)
        and kind.get("group", "") == ""
        and kind.get("kind") == "Pod"
        and (not isinstance(resource, dict) or resource.get("resource", "pods") == "pods")
        and not request.get("subResource")
    )
    if not is_pod:
        what = kind.get("kind") if isinstance(kind, dict) else kind
        sub = request.get("subResource")
        if sub:
            what = f"{what} subresource {sub}"
        return Admission(
            _response(uid, [], [f"{shown(what)} is not a Pod: nothing injected (pods only)"]),
            dry_run=dry_run,
        )
    operation = request.get("operation")
    if operation != "CREATE":
        return Admission(
            _response(uid, [], [f"{shown(operation)} of a pod: nothing injected (only CREATE is)"]),
            dry_run=dry_run,
        )
    pod = request.get("object")
    problem = _not_a_pod(pod)
    if problem is not None:
        return Admission(_response(uid, [], [f"{problem}: nothing injected"]), dry_run=dry_run)
    assert isinstance(pod, dict)
    name = _pod_name(pod, request)
    metadata = pod.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    choice = str(annotations.get(INJECT_ANNOTATION, "")).strip().lower()
    if choice == "false":
        return Admission(_response(uid, [], []), pod=name, dry_run=dry_run)
    warnings: list[str] = []
    if choice not in ("", "true", "enabled"):
        warnings.append(
            f"annotation {INJECT_ANNOTATION}: {shown(annotations[INJECT_ANNOTATION])} is not "
            '"false", so the pod is injected; only "false" opts out'
        )
    override = str(annotations.get(OVERRIDE_ANNOTATION, "")).strip().lower() == "true"
    marked = INJECTED_ANNOTATION in annotations
    ops: list[dict[str, Any]] = []
    spec = pod["spec"]
    mountable = _volumes(spec, the_plan, ops, warnings)
    for field_name in ("initContainers", "containers"):
        containers = spec.get(field_name) or []
        for index, container in enumerate(containers):
            _container(
                container,
                ("spec", field_name, index),
                the_plan,
                mountable,
                override=override,
                warn=not marked,
                ops=ops,
                warnings=warnings,
            )
    if ops:
        warnings.extend(the_plan.warnings)
    if not marked and ops:
        if annotations:
            ops.append(
                {
                    "op": "add",
                    "path": json_pointer("metadata", "annotations", INJECTED_ANNOTATION),
                    "value": the_plan.version,
                }
            )
        else:
            ops.append(
                {
                    "op": "add",
                    "path": json_pointer("metadata", "annotations"),
                    "value": {INJECTED_ANNOTATION: the_plan.version},
                }
            )
    if ops and "metadata" not in pod:
        ops.insert(0, {"op": "add", "path": "/metadata", "value": {}})
    return Admission(
        _response(uid, ops, warnings, the_plan.encoded), ops, pod=name, dry_run=dry_run
    )


def _not_a_pod(pod: object) -> str | None:
    if not isinstance(pod, dict):
        return "the request's object is not a Pod object"
    if pod.get("metadata") is not None and not isinstance(pod.get("metadata"), dict):
        return "the pod's metadata is not an object"
    annotations = (pod.get("metadata") or {}).get("annotations")
    if annotations is not None and not isinstance(annotations, dict):
        return "the pod's metadata.annotations is not an object"
    spec = pod.get("spec")
    if not isinstance(spec, dict) or not isinstance(spec.get("containers"), list):
        return "the pod has no spec.containers list"
    for field_name in ("containers", "initContainers"):
        containers = spec.get(field_name)
        if containers is None:
            continue
        if not isinstance(containers, list):
            return f"the pod's spec.{field_name} is not a list"
        for c in containers:
            if not isinstance(c, dict):
                return f"an entry of spec.{field_name} is not an object"
            for key in ("env", "volumeMounts", "envFrom"):
                value = c.get(key)
                if value is not None and not (
                    isinstance(value, list) and all(isinstance(e, dict) for e in value)
                ):
                    return f"spec.{field_name}[].{key} is not a list of objects"
    volumes = spec.get("volumes")
    if volumes is not None and not (
        isinstance(volumes, list) and all(isinstance(v, dict) for v in volumes)
    ):
        return "the pod's spec.volumes is not a list of objects"
    return None


def _pod_name(pod: Mapping[str, Any], request: Mapping[str, Any]) -> str:
    metadata = pod.get("metadata") or {}
    name = metadata.get("name") or request.get("name")
    if not name and metadata.get("generateName"):
        name = f"{metadata['generateName']}*"
    namespace = request.get("namespace") or metadata.get("namespace") or "?"
    return f"{namespace}/{name or '?'}"


def _volumes(
    spec: Mapping[str, Any], the_plan: Plan, ops: list[dict[str, Any]], warnings: list[str]
) -> set[str]:
    """Add the plan's volumes the pod lacks; the names that may be mounted."""
    existing = {v.get("name"): v for v in spec.get("volumes") or []}
    usable: set[str] = set()
    missing: list[dict[str, Any]] = []
    for volume in the_plan.volumes:
        have = existing.get(volume["name"])
        if have is None:
            missing.append(volume)
            usable.add(volume["name"])
        elif have == volume:
            usable.add(volume["name"])
        else:
            warnings.append(
                f"the pod has its own volume named {volume['name']}, so egress mounts nothing "
                f"of it; rename that volume to get egress's files"
            )
    if missing and "volumes" not in spec:
        ops.append({"op": "add", "path": "/spec/volumes", "value": missing})
    else:
        ops.extend({"op": "add", "path": "/spec/volumes/-", "value": v} for v in missing)
    return usable


def _container(
    container: Mapping[str, Any],
    where: tuple[str, str, int],
    the_plan: Plan,
    mountable: set[str],
    *,
    override: bool,
    warn: bool,
    ops: list[dict[str, Any]],
    warnings: list[str],
) -> None:
    """Append the ops that give one container what the plan has and it lacks."""
    cname = _Shown(container.get("name", where[2]))
    mounts: list[dict[str, Any]] = list(container.get("volumeMounts") or [])
    add_mounts: list[dict[str, Any]] = []
    mounted: set[str] = set()
    for mount in the_plan.mounts:
        if mount["name"] not in mountable:
            continue
        same_path = [m for m in mounts if m.get("mountPath") == mount["mountPath"]]
        if not same_path:
            add_mounts.append(mount)
            mounted.add(mount["mountPath"])
        elif same_path[0].get("name") == mount["name"]:
            mounted.add(mount["mountPath"])
        elif warn:
            warnings.append(
                f"container {cname} mounts its own volume at {mount['mountPath']}: kept, so "
                f"egress's {mount['name']} files are not there"
            )
    wanted = [
        e
        for e, need in zip(the_plan.env, the_plan.needs, strict=True)
        if need is None or need in mounted
    ]
    env: list[dict[str, Any]] = list(container.get("env") or [])
    have: dict[str, list[int]] = {}
    for i, entry in enumerate(env):
        have.setdefault(str(entry.get("name")), []).append(i)
    wanted_by_name = {e["name"]: e for e in wanted}

    def differs(i: int) -> bool:
        entry = env[i]
        return wanted_by_name.get(str(entry.get("name"))) != entry

    own_proxy = sorted(n for n in have if n in PROXY_FAMILY and any(differs(i) for i in have[n]))
    own_other = sorted(
        n
        for n in have
        if n in wanted_by_name and n not in PROXY_FAMILY and any(differs(i) for i in have[n])
    )
    remove: list[int] = []
    skip: set[str] = set()
    if own_proxy:
        if override:
            remove += [i for n in have if n in PROXY_FAMILY for i in have[n]]
        else:
            skip |= PROXY_FAMILY
            if warn:
                warnings.append(
                    f"container {cname} sets {', '.join(own_proxy)} itself: its proxy variables "
                    f'are kept and egress adds none ({OVERRIDE_ANNOTATION}: "true" replaces them)'
                )
    for n in own_other:
        if override:
            remove += have[n]
        else:
            skip.add(n)
            if warn:
                warnings.append(
                    f'container {cname} sets {n} itself: kept ({OVERRIDE_ANNOTATION}: "true" '
                    "replaces it)"
                )
    removed = set(remove)
    present = {str(e.get("name")) for i, e in enumerate(env) if i not in removed}
    add_env = [e for e in wanted if e["name"] not in skip and e["name"] not in present]
    if add_env and container.get("envFrom") and warn:
        warnings.append(
            f"container {cname} also reads envFrom, which egress cannot see: egress's env "
            "entries win over any of the same name there"
        )
    base = json_pointer(*where)
    for i in sorted(removed, reverse=True):
        ops.append({"op": "remove", "path": f"{base}/env/{i}"})
    if add_env:
        if "env" not in container:
            ops.append({"op": "add", "path": f"{base}/env", "value": add_env})
        else:
            path = f"{base}/env/-"
            ops.extend({"op": "add", "path": path, "value": e} for e in add_env)
    if add_mounts:
        if "volumeMounts" not in container:
            ops.append({"op": "add", "path": f"{base}/volumeMounts", "value": add_mounts})
        else:
            path = f"{base}/volumeMounts/-"
            ops.extend({"op": "add", "path": path, "value": m} for m in add_mounts)


def _mount_needed(entry: Mapping[str, Any]) -> str | None:
    """The mount a variable's file lies under (CA_DIR, SETTINGS_DIR), or None."""
    value = entry.get("value")
    if isinstance(value, str):
        for directory in (CA_DIR, SETTINGS_DIR):
            if value.startswith(directory + "/"):
                return directory
    return None


def url_safe(password: str) -> str:
    """``password`` percent-encoded for a URL's userinfo: what Secret ``egress-proxy`` must hold
    when the password has characters other than letters, digits and ``-._~``.

    >>> url_safe("p@ss:w/rd")
    'p%40ss%3Aw%2Frd'
    """
    return quote(password, safe="")
