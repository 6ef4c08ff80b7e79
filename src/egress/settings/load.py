"""One entry point that picks the loader: ``egress.yaml``, seed Helm values, or the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping

from egress.errors import ConfigError, Problem
from egress.settings.egress_yaml import load_yaml
from egress.settings.environment import load_environment
from egress.settings.helm import load_helm_values
from egress.settings.model import Settings


def load_settings(
    path: str | os.PathLike[str] | None = None,
    *,
    helm_values: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Settings from ``egress.yaml``, from seed-style Helm values, or else from the environment."""
    if path is not None and helm_values is not None:
        raise ConfigError(
            [Problem("config", "both a config file and Helm values were given", "give only one")]
        )
    if path is not None:
        return load_yaml(path, env=env)
    if helm_values is not None:
        return load_helm_values(helm_values, env=env)
    return load_environment(os.environ if env is None else env)
