"""What changed between two stored settings documents, one line per dotted path.

Mappings are walked key by key (``proxy.url``, ``resolve.db.corp.example``); any other value (a
list, a number, a text) is one value, shown as JSON. The proxy password is never in a document:
the caller adds one line saying it was replaced, from the versions' password generations.

>>> for line in diff_documents({"proxy": {"url": "http://a:3128"}, "features": ["core"]},
...                            {"proxy": {"url": "http://b:3128", "verify": False}}):
...     print(line)
features: ["core"] -> (absent)
proxy.url: "http://a:3128" -> "http://b:3128"
proxy.verify: (absent) -> false
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from egress.redact import mask_url

PASSWORD_PATH = "proxy password"


@dataclass(frozen=True)
class DiffLine:
    """One changed path: its value before and after (None: absent)."""

    path: str
    before: str | None
    after: str | None

    def __str__(self) -> str:
        return f"{self.path}: {self.before or '(absent)'} -> {self.after or '(absent)'}"


def flatten(document: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Every leaf of ``document`` by dotted path, its value as JSON text (URLs masked)."""
    out: dict[str, str] = {}
    for key, value in document.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, path + "."))
        else:
            out[path] = mask_url(json.dumps(value, ensure_ascii=False, sort_keys=True))
    return out


def diff_documents(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[DiffLine]:
    """The paths whose values differ, sorted by path."""
    old, new = flatten(before), flatten(after)
    return [
        DiffLine(path, old.get(path), new.get(path))
        for path in sorted(old.keys() | new.keys())
        if old.get(path) != new.get(path)
    ]


def password_line(before_generation: int, after_generation: int) -> DiffLine | None:
    """The line for the proxy password when it changed: "set" the first time, else "replaced"."""
    if before_generation == after_generation:
        return None
    return DiffLine(PASSWORD_PATH, None, "set" if before_generation == 0 else "replaced")
