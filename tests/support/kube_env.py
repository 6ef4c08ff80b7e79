"""A container's environment as kubelet builds it from a pod spec, for the webhook's tests.

Kubernetes (``third_party/forked/golang/expansion``): entries are taken in order; a ``value``
has ``$(NAME)`` replaced by the value of an *earlier* entry (an unknown name stays as written)
and ``$$`` becomes ``$``; ``valueFrom.secretKeyRef`` / ``configMapKeyRef`` values are used as
they are, never expanded. The pod's objects are given as plain mappings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def expand(text: str, defined: Mapping[str, str]) -> str:
    """``text`` with ``$(NAME)`` and ``$$`` expanded as kubelet does.

    >>> expand("http://u:$(PW)@p:3128 $$(PW) $(NOPE) $x", {"PW": "s"})
    'http://u:s@p:3128 $(PW) $(NOPE) $x'
    """
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "$" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                end = text.find(")", i + 2)
                if end != -1:
                    name = text[i + 2 : end]
                    out.append(defined.get(name, text[i : end + 1]))
                    i = end + 1
                    continue
        out.append(char)
        i += 1
    return "".join(out)


def container_env(
    container: Mapping[str, Any],
    *,
    secrets: Mapping[str, Mapping[str, str]] = {},
    configmaps: Mapping[str, Mapping[str, str]] = {},
) -> dict[str, str]:
    """The variables ``container`` starts with: envFrom first, then env (which wins)."""
    defined: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        if "configMapRef" in source:
            defined.update(configmaps[source["configMapRef"]["name"]])
        elif "secretRef" in source:
            defined.update(secrets[source["secretRef"]["name"]])
    entries: Sequence[Mapping[str, Any]] = container.get("env") or []
    for entry in entries:
        name = entry["name"]
        if "valueFrom" in entry:
            ref = entry["valueFrom"]
            if "secretKeyRef" in ref:
                defined[name] = secrets[ref["secretKeyRef"]["name"]][ref["secretKeyRef"]["key"]]
            elif "configMapKeyRef" in ref:
                cm = ref["configMapKeyRef"]
                defined[name] = configmaps[cm["name"]][cm["key"]]
            else:
                raise AssertionError(f"valueFrom not modelled here: {ref}")
        else:
            defined[name] = expand(str(entry.get("value", "")), defined)
    return defined
