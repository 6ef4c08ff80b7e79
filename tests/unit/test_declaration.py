"""The one declaration of the settings' fields: the loader, the JSON Schema and the console's form
all come from ``egress.settings.declaration.FIELDS``, and agree with one another."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import trustme
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from egress.catalog import known_features
from egress.cli import main
from egress.errors import ConfigError
from egress.settings import Settings, egress_yaml, load_settings_from_mapping
from egress.settings.declaration import (
    FIELDS,
    KINDS,
    Field,
    document_from_form,
    field,
    field_of_problem,
    form_value,
    json_schema,
    yaml_keys,
)
from egress.warehouses import WAREHOUSES

NO_ENV: dict[str, str] = {}
EXAMPLE = Path(__file__).parents[2] / "examples" / "egress.yaml"
YAML_FIELDS = [f for f in FIELDS if f.yaml]
VALIDATOR = jsonschema.Draft202012Validator(json_schema())


def set_path(document: dict[str, Any], path: str, value: object) -> dict[str, Any]:
    """``document`` with ``value`` at a dotted path (sections made as needed)."""
    *parents, key = path.split(".")
    target = document
    for part in parents:
        target = target.setdefault(part, {})
    target[key] = value
    return document


def outcome(document: object, **kwargs: Any) -> Settings | set[str]:
    """The Settings a document loads to, or the set of fields its problems name."""
    try:
        return load_settings_from_mapping(document, env=NO_ENV, **kwargs)
    except ConfigError as exc:
        return {p.field for p in exc.problems}


def schema_accepts(document: object) -> bool:
    return VALIDATOR.is_valid(document)


def schema_paths(schema: dict[str, Any], prefix: str = "") -> set[str]:
    """Every leaf key the schema declares, as dotted paths."""
    paths: set[str] = set()
    for key, sub in schema["properties"].items():
        if "properties" in sub:
            paths |= schema_paths(sub, f"{prefix}{key}.")
        else:
            paths.add(prefix + key)
    return paths


# -- the declaration itself ----------------------------------------------------------------------


def test_declaration_is_well_formed() -> None:
    paths = [f.path for f in FIELDS]
    assert len(paths) == len(set(paths))
    for f in FIELDS:
        assert f.kind in KINDS, f.path
        assert f.label and f.help.endswith("."), f.path
        assert f.section in ("Proxy", "Exclusions", "Deployment", "Warehouses", "Checks")
        assert bool(f.choices) == (f.kind == "choice" or f.path in ("warehouses", "features"))
        assert field(f.path) is f
    with pytest.raises(KeyError):
        field("proxy.nope")
    assert field("warehouses").choices == tuple(WAREHOUSES)
    assert field("features").choices == known_features()


def test_the_console_never_gets_a_server_path_and_the_password_is_not_yaml() -> None:
    assert not field("proxy.password_file").console
    assert not field("proxy.ca_file").console
    assert not field("proxy.kerberos.keytab").console
    assert field("proxy.password").kind == "secret" and not field("proxy.password").yaml
    assert field("proxy.ca_pem").kind == "pem" and field("proxy.ca_pem").console
    assert [f.path for f in FIELDS if not f.yaml] == ["proxy.password"]


def test_design_section_4_fields_are_all_declared() -> None:
    expected = {
        "proxy.enabled",
        "proxy.url",
        "proxy.https_url",
        "proxy.host",
        "proxy.port",
        "proxy.type",
        "proxy.username",
        "proxy.password_file",
        "proxy.auth",
        "proxy.kerberos.keytab",
        "proxy.kerberos.principal",
        "proxy.kerberos.spn",
        "proxy.ca_file",
        "proxy.ca_pem",
        "proxy.verify",
        "excluded_domains",
        "deployment.kind",
        "deployment.cluster_domain",
        "deployment.service_ip",
        "deployment.gke_workload_identity",
        "warehouses",
        "tunnel_tcp_warehouses",
        "features",
        "resolve",
        "endpoints",
    }
    assert {f.path for f in YAML_FIELDS} == expected


def test_loader_keys_come_from_the_declaration() -> None:
    assert yaml_keys() == egress_yaml.TOP_KEYS
    assert yaml_keys("proxy") == egress_yaml.PROXY_KEYS
    assert yaml_keys("deployment") == egress_yaml.DEPLOYMENT_KEYS
    assert (
        yaml_keys("proxy.kerberos") == egress_yaml.KERBEROS_KEYS == ("keytab", "principal", "spn")
    )
    assert "kerberos" in egress_yaml.PROXY_KEYS
    assert set(egress_yaml.READERS) == set(KINDS) - {"secret"}


# -- one declaration: the loader and the schema accept the same keys ------------------------------


def test_schema_declares_exactly_the_yaml_fields() -> None:
    assert schema_paths(json_schema()) == {f.path for f in YAML_FIELDS}


@pytest.mark.parametrize("f", YAML_FIELDS, ids=lambda f: f.path)
def test_every_declared_key_is_known_to_the_loader_and_the_schema(f: Field) -> None:
    document = set_path({}, f.path, None)
    assert load_settings_from_mapping(document, env=NO_ENV) == Settings(source="mapping")
    assert schema_accepts(document)


@pytest.mark.parametrize("f", YAML_FIELDS, ids=lambda f: f.path)
def test_every_declared_key_is_read_by_the_loader_under_its_name(f: Field) -> None:
    """A value of the wrong shape is refused by name: the loader reads each declared key."""
    bad: object = [1] if f.kind == "map" else {"not": "a value"}
    document = set_path({}, f.path, bad)
    if f.path in ("proxy.port", "proxy.type"):
        document["proxy"]["host"] = "proxy.corp.example"
    problems = outcome(document)
    assert isinstance(problems, set) and f.path in problems, problems
    assert field_of_problem(f.path) == f.path
    assert not schema_accepts(document)


@pytest.mark.parametrize(
    "path",
    [
        "nope",
        "proxy.password",
        "proxy.ntlm",
        "proxy.kerberos.realm",
        "deployment.namespace",
        "Proxy",
    ],
)
def test_undeclared_keys_are_refused_by_both(path: str) -> None:
    document = set_path({}, path, None)
    problems = outcome(document)
    assert problems == {path}
    assert field_of_problem(path) == (path if path == "proxy.password" else None)
    assert not schema_accepts(document)


# -- the JSON Schema -----------------------------------------------------------------------------


def test_schema_is_valid_draft_2020_12_with_id_and_title() -> None:
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] and schema["title"] == "egress.yaml"
    assert schema["additionalProperties"] is False
    proxy = schema["properties"]["proxy"]
    assert proxy["additionalProperties"] is False
    assert proxy["properties"]["url"]["description"] == field("proxy.url").help
    assert proxy["properties"]["type"]["anyOf"][0]["enum"] == ["http", "https", None]


@pytest.mark.parametrize("f", [f for f in FIELDS if f.choices], ids=lambda f: f.path)
def test_choices_are_read_in_any_case_exactly_where_declared(f: Field) -> None:
    """Whether a choice is accepted in upper case, the loader and the schema agree."""
    value: object = f.choices[-1].upper()
    document = set_path({}, f.path, value if f.kind == "choice" else [value])
    if f.path == "proxy.type":
        document["proxy"]["host"] = "proxy.corp.example"
    assert isinstance(outcome(document), Settings) == f.any_case
    assert schema_accepts(document) == f.any_case


def test_example_file_validates_against_the_schema() -> None:
    document = yaml.safe_load(EXAMPLE.read_text())
    VALIDATOR.validate(document)
    assert isinstance(outcome(document), Settings)


@pytest.mark.parametrize(
    "document",
    [
        {"proxy": {"url": "socks5://p:1080"}},
        {"proxy": {"host": "proxy", "port": 70000}},
        {"proxy": {"host": "proxy", "port": "31a8"}},
        {"proxy": {"host": "proxy", "type": "socks"}},
        {"proxy": {"url": "http://p:3128", "verify": "maybe"}},
        {"proxy": {"url": "http://p:3128", "passwd_file": "/x"}},
        {"deployment": {"kind": "docker"}},
        {"warehouses": ["bigquery", "oracle"]},
        {"features": ["core", "snowflake"]},
        {"resolve": ["db.corp.example=10.0.0.5"]},
        {"resolve": {"db.corp.example": ["10.0.0.5"]}},
        {"excluded_domains": [".corp.example", 5]},
        {"tunnel_tcp_warehouses": 2},
        ["proxy"],
    ],
    ids=repr,
)
def test_bad_documents_are_refused_by_loader_and_schema(document: object) -> None:
    assert isinstance(outcome(document), set)
    assert not schema_accepts(document)


@pytest.mark.parametrize(
    "document",
    [
        {},
        {"proxy": {"host": "proxy.corp.example", "port": "3128", "type": "HTTPS"}},
        {"proxy": {"url": "HTTP://p:3128", "enabled": " Yes", "verify": "OFF"}},
        {"excluded_domains": ".corp.example, 10.0.0.0/8", "warehouses": "bigquery, postgres"},
        {"resolve": {"db.corp.example": "10.0.0.5"}, "endpoints": ["postgresql://db:5432"]},
        {"deployment": None, "proxy": None, "features": []},
    ],
    ids=repr,
)
def test_good_documents_are_accepted_by_loader_and_schema(document: dict[str, Any]) -> None:
    assert isinstance(outcome(document), Settings)
    assert schema_accepts(document)


def test_egress_schema_prints_the_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == json_schema() and not err
    with pytest.raises(SystemExit) as exc:
        main(["schema", "--help"])
    assert exc.value.code == 0
    assert "JSON Schema" in capsys.readouterr().out


# -- the console's form --------------------------------------------------------------------------


def through_form(document: dict[str, Any]) -> dict[str, Any]:
    return document_from_form({f.path: form_value(document, f) for f in FIELDS})


def test_example_round_trips_through_the_form() -> None:
    document = yaml.safe_load(EXAMPLE.read_text())
    again = through_form(document)
    assert outcome(again) == outcome(document)
    assert schema_accepts(again)


def test_form_texts_become_a_yaml_document() -> None:
    form = {
        "proxy.enabled": "on",
        "proxy.url": " http://proxy.corp.example:3128 ",
        "proxy.port": "",
        "proxy.verify": "",  # an unticked checkbox: off
        "excluded_domains": ".corp.example,\n10.0.0.0/8\n\n",
        "warehouses": "",  # none at all (absent would mean every one)
        "resolve": "db.corp.example = 10.0.0.5\n\nbroken-line",
        "deployment.kind": "single-vm",
        "proxy.password": "hunter2",
        "proxy.password_file": "/etc/shadow",
        "proxy.ca_file": "/etc/shadow",
        "unknown": "x",
    }
    assert document_from_form(form) == {
        "proxy": {"enabled": True, "url": "http://proxy.corp.example:3128", "verify": False},
        "excluded_domains": [".corp.example", "10.0.0.0/8"],
        "deployment": {"kind": "single-vm"},
        "warehouses": [],
        "resolve": {"db.corp.example": "10.0.0.5", "broken-line": ""},
    }
    assert "hunter2" not in json.dumps(document_from_form(form))


def test_the_form_never_raises_and_the_loader_names_the_field() -> None:
    document = document_from_form({"proxy.port": "31x8", "proxy.host": "p", "proxy.verify": "?"})
    assert document["proxy"]["port"] == "31x8"
    problems = outcome(document)
    assert isinstance(problems, set)
    assert {field_of_problem(name) for name in problems} == {"proxy.port", "proxy.verify"}


def test_form_never_shows_a_secret() -> None:
    assert form_value({"proxy": {"password": "hunter2"}}, field("proxy.password")) == ""


def test_field_of_problem() -> None:
    assert field_of_problem("excluded_domains[3]") == "excluded_domains"
    assert field_of_problem("resolve.db.corp") == "resolve"
    assert field_of_problem("resolve") == "resolve"
    assert field_of_problem("endpoints[0]") == "endpoints"
    assert field_of_problem("proxy.url") == "proxy.url"
    assert field_of_problem("settings") is None
    assert field_of_problem("KUBERNETES_SERVICE_HOST") is None
    assert field_of_problem("proxy.url.x") is None


def test_every_problem_of_a_bad_document_has_its_field() -> None:
    document = {
        "proxy": {"url": "socks5://p", "verify": "x", "ca_pem": "nope"},
        "excluded_domains": ["a", 1],
        "resolve": {"bad host": "x"},
        "endpoints": ["nope"],
        "warehouses": ["oracle"],
        "deployment": {"kind": "docker", "service_ip": "x"},
    }
    problems = outcome(document)
    assert isinstance(problems, set) and len(problems) >= 8
    assert all(field_of_problem(name) is not None for name in problems), problems


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A value, or the key left out (``...``)."""
    return st.one_of(st.just(...), strategy)


TOKENS = st.sampled_from([".corp.example", "10.0.0.0/8", "localhost", "db.internal", "*.svc"])
BOOLS = st.one_of(st.booleans(), st.sampled_from(["yes", "no", "on", "off", "True"]))


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    """egress.yaml documents of the console's fields, most valid, some refused."""
    candidates: dict[str, Any] = {
        "proxy.enabled": maybe(BOOLS),
        "proxy.url": maybe(st.sampled_from(["http://proxy.corp.example:3128", "https://p:3129"])),
        "proxy.https_url": maybe(st.sampled_from(["http://tls.corp.example:8080", ""])),
        "proxy.host": maybe(st.sampled_from(["proxy.corp.example", "fd00::5"])),
        "proxy.port": maybe(st.one_of(st.integers(1, 65535), st.just("8080"))),
        "proxy.type": maybe(st.sampled_from(["http", "https", "HTTPS"])),
        "proxy.verify": maybe(BOOLS),
        "excluded_domains": maybe(st.one_of(st.lists(TOKENS, max_size=4), st.just("a.example,b"))),
        "deployment.kind": maybe(st.sampled_from(["kubernetes", "single-vm", "Single-VM"])),
        "deployment.cluster_domain": maybe(st.sampled_from(["cluster.local", "k8s.corp"])),
        "deployment.service_ip": maybe(st.sampled_from(["auto", "10.96.0.1", "fd00::1"])),
        "deployment.gke_workload_identity": maybe(BOOLS),
        "warehouses": maybe(st.lists(st.sampled_from(list(WAREHOUSES)), max_size=5)),
        "tunnel_tcp_warehouses": maybe(BOOLS),
        "features": maybe(st.lists(st.sampled_from(list(known_features())), max_size=3)),
        "resolve": maybe(
            st.dictionaries(st.sampled_from(["db.corp.example", "vault"]), st.just("10.0.0.5"))
        ),
        "endpoints": maybe(st.lists(st.just("postgresql://db.corp.example:5432"), max_size=2)),
    }
    document: dict[str, Any] = {}
    for path, strategy in candidates.items():
        value = draw(strategy)
        if value is not ...:
            set_path(document, path, value)
    return document


@settings(max_examples=150, deadline=None)
@given(documents())
def test_generated_documents_round_trip_through_the_form(document: dict[str, Any]) -> None:
    before = outcome(document)
    after = outcome(through_form(document))
    assert after == before


def test_a_ca_pem_round_trips_through_the_form() -> None:
    pem = trustme.CA().cert_pem.bytes().decode()
    document = {"proxy": {"url": "https://p:3129", "ca_pem": pem.replace("\n", "\r\n")}}
    settings_ = outcome(document)
    assert isinstance(settings_, Settings) and settings_.proxy.ca_pem == pem
    assert outcome(through_form(document)) == settings_
