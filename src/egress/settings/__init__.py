"""Settings: one validated, immutable description of the proxy and what bypasses it.

Three loaders read the same model, and every one of them refuses bad input whole, listing every
problem at once (field, message, hint) in a :class:`~egress.errors.ConfigError`:

- :func:`load_yaml` reads ``egress.yaml`` (:mod:`~egress.settings.egress_yaml` shows its shape);
  :func:`load_settings_from_mapping` takes the same shape already parsed.
- :func:`load_helm_values` reads the seed platform's ``customizations.yaml``
  (``externalProxy.*``, ``trustedCACerts.*``, ``clusterDomain``) as it is
  (:mod:`~egress.settings.helm`).
- :func:`load_environment` reads ``HTTP(S)_PROXY``, ``ALL_PROXY`` and ``NO_PROXY`` as the
  runtimes agree to (:mod:`~egress.settings.environment`).

The package, one module per idea: :mod:`~egress.settings.model` (the frozen values),
:mod:`~egress.settings.fields` (readers that collect problems), :mod:`~egress.settings.proxy_url`,
:mod:`~egress.settings.files` (bounded reads: regular files only; 1 MiB for settings files and
CA bundles, 4 KiB for the password file), :mod:`~egress.settings.yaml_file` (aliases bounded,
duplicate keys refused), :mod:`~egress.settings.sections` (the proxy and deployment sections,
shared by the loaders), :mod:`~egress.settings.finish` (warnings, then refuse or accept).

>>> s = Settings.from_proxy("https://proxy.corp.example:3129", no_proxy=".corp.example")
>>> str(s.proxy.for_scheme("https")), s.excluded_domains
('https://proxy.corp.example:3129', ('.corp.example',))
>>> load_settings_from_mapping({"proxy": {"url": "socks5://p:1080"}})  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
egress.errors.ConfigError: proxy.url: "socks5://p:1080" uses scheme socks5; only http:// and ...
"""

from egress.redact import REDACTED, Secret
from egress.settings.egress_yaml import load_settings_from_mapping, load_yaml
from egress.settings.environment import load_environment
from egress.settings.fields import valid_dns_name
from egress.settings.files import CA_LIMIT, CONFIG_LIMIT, PASSWORD_LIMIT
from egress.settings.helm import load_helm_values, settings_from_helm_mapping
from egress.settings.load import load_settings
from egress.settings.model import (
    DEFAULT_WAREHOUSES,
    DEPLOYMENT_KINDS,
    Deployment,
    KerberosSettings,
    ProxySettings,
    ProxyURL,
    Settings,
)
from egress.settings.proxy_url import parse_proxy_url

__all__ = [
    "CA_LIMIT",
    "CONFIG_LIMIT",
    "DEFAULT_WAREHOUSES",
    "DEPLOYMENT_KINDS",
    "PASSWORD_LIMIT",
    "REDACTED",
    "Deployment",
    "KerberosSettings",
    "ProxySettings",
    "ProxyURL",
    "Secret",
    "Settings",
    "load_environment",
    "load_helm_values",
    "load_settings",
    "load_settings_from_mapping",
    "load_yaml",
    "parse_proxy_url",
    "settings_from_helm_mapping",
    "valid_dns_name",
]
