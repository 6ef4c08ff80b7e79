"""The two inputs the console adds to egress.yaml's loader: a proxy password given directly
(instead of ``proxy.password_file``) and an inline CA (``proxy.ca_pem``), and what the renderers
make of that CA."""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme
import yaml

from egress.errors import ConfigError
from egress.render import RenderOptions, renderer
from egress.settings import Secret, Settings, load_settings_from_mapping, settings_from_helm_mapping
from egress.transport.trust import operator_cas

NO_ENV: dict[str, str] = {}
PROXY = {"url": "https://proxy.corp.example:3129"}


def load(proxy: dict[str, object], **kwargs: object) -> Settings:
    return load_settings_from_mapping({"proxy": proxy}, env=NO_ENV, **kwargs)  # type: ignore[arg-type]


def problems(proxy: dict[str, object], **kwargs: object) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        load(proxy, **kwargs)
    return {p.field: p.message for p in info.value.problems}


@pytest.fixture(scope="module")
def ca_pem() -> str:
    return trustme.CA().cert_pem.bytes().decode()


# -- the password given directly -----------------------------------------------------------------


def test_a_given_password_is_used_and_never_shown() -> None:
    s = load({**PROXY, "username": "alice"}, password=Secret("pa:ss/w@rd"))
    assert s.proxy.password == Secret("pa:ss/w@rd") and s.proxy.password_file is None
    assert "pa:ss" not in repr(s) and "pa:ss" not in str(s.proxy.display(s.proxy.https_proxy))


def test_a_given_password_and_a_password_file_is_an_error_on_the_file(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    found = problems(
        {**PROXY, "username": "alice", "password_file": str(secret)}, password=Secret("x")
    )
    assert list(found) == ["proxy.password_file"]
    assert "given directly" in found["proxy.password_file"]


def test_a_given_password_needs_a_username() -> None:
    assert list(problems(PROXY, password=Secret("hunter2"))) == ["proxy.username"]


@pytest.mark.parametrize("bad", ["", "two\nlines", "cr\r"])
def test_a_given_password_is_one_non_empty_line(bad: str) -> None:
    found = problems({**PROXY, "username": "alice"}, password=Secret(bad))
    assert list(found) == ["proxy.password"]
    assert all("two" not in message for message in found.values())


def test_without_a_password_a_username_still_needs_one() -> None:
    assert list(problems({**PROXY, "username": "alice"})) == ["proxy.password_file"]


# -- the inline CA -------------------------------------------------------------------------------


def test_an_inline_ca_is_loaded_and_trusted(ca_pem: str) -> None:
    s = load({**PROXY, "ca_pem": ca_pem})
    assert s.proxy.ca_pem == ca_pem
    only_operator = operator_cas(s.proxy)
    assert only_operator is not None and only_operator.cert_store_stats()["x509_ca"] == 1


@pytest.mark.parametrize(
    ("pem", "message"),
    [
        ("just text", "holds no PEM certificate"),
        ("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "no usable PEM"),
        ("-----BEGIN CERTIFICATE-----" + "A" * (1024 * 1024), "larger than 1 MiB"),
        (["a list"], "is not a string"),
    ],
    ids=["no-pem", "garbage-pem", "too-big", "not-text"],
)
def test_a_bad_inline_ca_is_refused_by_name(pem: object, message: str) -> None:
    found = problems({**PROXY, "ca_pem": pem})
    assert list(found) == ["proxy.ca_pem"]
    assert message in found["proxy.ca_pem"]
    assert "AAAA" not in found["proxy.ca_pem"]


def test_an_inline_ca_and_a_ca_file_together_is_an_error(ca_pem: str, tmp_path: Path) -> None:
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text(ca_pem)
    found = problems({**PROXY, "ca_pem": ca_pem, "ca_file": str(ca_file)})
    assert list(found) == ["proxy.ca_pem"]
    assert "ca_file" in found["proxy.ca_pem"]


def test_helm_render_carries_the_inline_ca_and_reads_back_the_same(ca_pem: str) -> None:
    s = load({**PROXY, "ca_pem": ca_pem})
    artifact = renderer("helm")(s, RenderOptions())
    values = yaml.safe_load(artifact.text)
    assert values["trustedCACerts"]["value"].strip() == ca_pem.strip()
    back = settings_from_helm_mapping(values, env=NO_ENV)
    assert back.proxy.ca_pem is not None and back.proxy.ca_pem.strip() == ca_pem.strip()
    assert not any("trustedCACerts was not rendered" in w for w in artifact.warnings)


def test_env_render_names_the_inline_ca_and_mounts_it(ca_pem: str) -> None:
    s = load({**PROXY, "ca_pem": ca_pem})
    text = renderer("env")(s, RenderOptions()).text
    assert "NODE_EXTRA_CA_CERTS=/etc/egress/ca/custom-ca.pem" in text
    assert "proxy.ca_pem" in text
    assert "BEGIN CERTIFICATE" not in text
