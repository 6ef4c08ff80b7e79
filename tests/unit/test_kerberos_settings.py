"""``proxy.auth`` and ``proxy.kerberos``: validation, schema, explain, renderer warnings."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest

from egress import cli
from egress.errors import ConfigError
from egress.render import RenderOptions, renderer
from egress.settings import Settings, load_settings_from_mapping
from egress.settings.declaration import document_from_form, form_value, json_schema
from egress.settings.keytab import principals

PROXY = "http://proxy.corp.example:3128"


def _counted(text: str) -> bytes:
    return struct.pack(">H", len(text)) + text.encode()


def write_keytab(path: Path, *names: str, realm: str = "CORP.EXAMPLE") -> Path:
    data = b"\x05\x02"
    for name in names:
        parts = name.split("/")
        entry = struct.pack(">H", len(parts)) + _counted(realm)
        entry += b"".join(_counted(p) for p in parts)
        entry += struct.pack(">IIBHH", 1, 0, 1, 18, 2) + b"kk"
        data += struct.pack(">i", len(entry)) + entry
    data += struct.pack(">i", -8) + b"\0" * 8  # a hole, as kadmin leaves after a removal
    path.write_bytes(data)
    return path


def load(proxy: dict[str, Any]) -> Settings:
    return load_settings_from_mapping({"proxy": {"url": PROXY, **proxy}}, env={})


def problems(proxy: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ConfigError) as exc:
        load(proxy)
    return {p.field: f"{p.message} ({p.hint})" for p in exc.value.problems}


def test_basic_is_the_default_with_a_username(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    assert load({"username": "svc", "password_file": str(secret)}).proxy.auth == "basic"
    assert load({}).proxy.auth is None
    assert load({"auth": "Negotiate"}).proxy.auth == "negotiate"


def test_negotiate_with_a_proxy_ip_needs_an_spn() -> None:
    found = load_settings_from_mapping
    with pytest.raises(ConfigError) as exc:
        found({"proxy": {"url": "http://10.0.0.5:3128", "auth": "negotiate"}}, env={})
    (p,) = exc.value.problems
    assert p.field == "proxy.kerberos.spn" and "IP address" in p.message
    assert "HTTP/proxy.corp.example" in p.hint
    ok = found(
        {
            "proxy": {
                "url": "http://10.0.0.5:3128",
                "auth": "negotiate",
                "kerberos": {"spn": "HTTP/p"},
            }
        },
        env={},
    )
    assert ok.proxy.kerberos is not None and ok.proxy.kerberos.spn == "HTTP/p"


def test_negotiate_refuses_a_username_or_password(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    found = problems({"auth": "negotiate", "username": "svc", "password_file": str(secret)})
    assert "proxy.username" in found and "negotiate" in found["proxy.username"]


def test_other_methods_and_stray_kerberos_keys_are_refused() -> None:
    assert "proxy.auth" in problems({"auth": "ntlm"})
    assert "proxy.kerberos.spn" in problems({"kerberos": {"spn": "HTTP/x"}})
    assert "proxy.username" in problems({"auth": "basic"})
    assert "proxy.kerberos.realm" in problems({"auth": "negotiate", "kerberos": {"realm": "X"}})


def test_a_keytab_must_exist_be_one_and_hold_the_principal(tmp_path: Path) -> None:
    keytab = write_keytab(tmp_path / "client.keytab", "svc", "HTTP/web")
    assert principals(keytab.read_bytes()) == ["svc@CORP.EXAMPLE", "HTTP/web@CORP.EXAMPLE"]
    for principal in ("svc", "svc@CORP.EXAMPLE"):
        k = {"keytab": str(keytab), "principal": principal}
        assert load({"auth": "negotiate", "kerberos": k}).proxy.kerberos is not None
    lacking = problems(
        {"auth": "negotiate", "kerberos": {"keytab": str(keytab), "principal": "bob"}}
    )
    assert 'holds no key of "bob"' in lacking["proxy.kerberos.keytab"]
    assert "svc@CORP.EXAMPLE" in lacking["proxy.kerberos.keytab"]
    missing = problems(
        {"auth": "negotiate", "kerberos": {"keytab": str(tmp_path / "nope"), "principal": "svc"}}
    )
    assert "proxy.kerberos.keytab" in missing
    text = tmp_path / "text"
    text.write_text("not a keytab\n")
    bad = problems({"auth": "negotiate", "kerberos": {"keytab": str(text), "principal": "svc"}})
    assert "is not a Kerberos keytab" in bad["proxy.kerberos.keytab"]
    alone = problems({"auth": "negotiate", "kerberos": {"keytab": str(keytab)}})
    assert "proxy.kerberos.principal" in alone


def test_schema_and_console_form_carry_the_fields() -> None:
    proxy = json_schema()["properties"]["proxy"]["properties"]
    assert proxy["auth"]["anyOf"][0]["enum"] == ["basic", "negotiate", None]
    assert set(proxy["kerberos"]["properties"]) == {"keytab", "principal", "spn"}
    document = document_from_form(
        {"proxy.url": PROXY, "proxy.auth": "negotiate", "proxy.kerberos.spn": "HTTP/p.corp"}
    )
    assert document["proxy"]["auth"] == "negotiate"
    assert document["proxy"]["kerberos"] == {"spn": "HTTP/p.corp"}
    from egress.settings.declaration import field

    assert form_value(document, field("proxy.kerberos.spn")) == "HTTP/p.corp"
    assert form_value(document, field("proxy.auth")) == "negotiate"


def test_explain_shows_the_auth_method(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "egress.yaml"
    config.write_text(f"proxy: {{url: '{PROXY}', auth: negotiate}}\n")
    assert cli.main(["explain", "--config", str(config), "https://api.example.com/"]) == 0
    out = capsys.readouterr().out
    assert (
        "  auth    negotiate (Kerberos to HTTP/proxy.corp.example; identity: the credential cache)"
        in out
    )


@pytest.mark.parametrize("kind", ["env", "helm"])
def test_renderers_warn_that_negotiate_cannot_be_carried(kind: str) -> None:
    artifact = renderer(kind)(load({"auth": "negotiate"}), RenderOptions())
    warned = [w for w in artifact.warnings if "negotiate" in w]
    assert len(warned) == 1 and "--proxy-negotiate" in warned[0] and "JAAS" in warned[0]
    plain = renderer(kind)(load({}), RenderOptions())
    assert not [w for w in plain.warnings if "negotiate" in w]
