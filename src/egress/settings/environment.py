"""The environment loader: the proxy variables every runtime reads, read the way they agree on.

``http_proxy``/``HTTP_PROXY``/``https_proxy``/``HTTPS_PROXY``/``all_proxy``/``ALL_PROXY``/
``no_proxy``/``NO_PROXY`` (as curl, Python and Go read them): lowercase first,
set-but-empty means unset, no fallback from https to the http proxy, uppercase ``HTTP_PROXY``
ignored when ``REQUEST_METHOD`` is set (CGI, "httpoxy"), a value without a scheme read as
``http://``. ``NO_PROXY`` is split by :func:`egress.noproxy.split_no_proxy`, like every other
no-proxy list.

>>> s = load_environment({"https_proxy": "proxy:3128", "NO_PROXY": ".corp",
...     "KUBERNETES_SERVICE_HOST": "10.96.0.1"})
>>> s.proxy.https_proxy, s.proxy.http_proxy, s.excluded_domains
(ProxyURL(scheme='http', host='proxy', port=3128, explicit_port=True), None, ('.corp',))
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from egress.noproxy import split_no_proxy
from egress.settings.fields import Problems
from egress.settings.finish import finish
from egress.settings.model import ProxySettings, ProxyURL, Settings
from egress.settings.proxy_url import parse_proxy_url
from egress.settings.sections import deployment

_ASCII_SPACE = " \t\n\v\f\r"


def _env_first(env: Mapping[str, str], *names: str) -> tuple[str, str] | None:
    """The first of ``names`` set to more than ASCII whitespace (set-but-empty means unset)."""
    for name in names:
        value = (env.get(name) or "").strip(_ASCII_SPACE)
        if value:
            return name, value
    return None


def load_environment(env: Mapping[str, str] | None = None) -> Settings:
    """Settings from the proxy variables of ``env`` (default: this process's environment)."""
    env = os.environ if env is None else env
    p = Problems()
    http_names = ["http_proxy"] + ([] if env.get("REQUEST_METHOD") else ["HTTP_PROXY"])
    found: dict[str, ProxyURL | None] = {}
    for scheme, names in (("http", http_names), ("https", ["https_proxy", "HTTPS_PROXY"])):
        hit = _env_first(env, *names, "all_proxy", "ALL_PROXY")
        found[scheme] = parse_proxy_url(hit[1], hit[0], p, assume_http=True) if hit else None
    no_proxy = _env_first(env, "no_proxy", "NO_PROXY")
    settings = Settings(
        proxy=ProxySettings(
            enabled=bool(found["http"] or found["https"]),
            http_proxy=found["http"],
            https_proxy=found["https"],
        ),
        excluded_domains=tuple(split_no_proxy(no_proxy[1])) if no_proxy else (),
        deployment=deployment(
            p,
            kind=None,
            cluster_domain=None,
            service_ip=None,
            gke=None,
            prefix="deployment.",
            env=env,
        ),
        source="environment",
    )
    return finish(p, settings, excluded_field=no_proxy[0] if no_proxy else "NO_PROXY")
