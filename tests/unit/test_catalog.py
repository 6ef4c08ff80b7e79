"""The destination catalog: its data, what is in scope, and the route each destination takes."""

from __future__ import annotations

import ast
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from egress.catalog import CatalogError, _parse, check_features, known_features, load_catalog
from egress.cli import main
from egress.errors import ConfigError
from egress.noproxy import NoProxyMatcher, canonical_host
from egress.scope import in_scope
from egress.settings import Settings, load_settings_from_mapping
from egress.warehouses import WAREHOUSES

EXAMPLE = Path(__file__).parents[2] / "examples" / "egress.yaml"
FEATURES = (
    "core",
    "gcs",
    "aws-s3",
    "azure-blob",
    "google-cloud-sql",
    "bigquery-oauth",
    "geocoding-tomtom",
    "geocoding-mapbox",
    "geocoding-here",
    "google-maps",
    "traveltime",
    "demo-maps",
)


def make(raw: dict[str, Any]) -> Settings:
    return load_settings_from_mapping(raw, env={})


HTTP = make({"proxy": {"url": "http://proxy.corp:3128"}})
HTTPS = make({"proxy": {"url": "https://proxy.corp:3129"}})
TUNNEL = make({"proxy": {"url": "http://proxy.corp:3128"}, "tunnel_tcp_warehouses": True})


def by_destination(rows: list[Any]) -> dict[str, Any]:
    return {row.destination: row for row in rows}


# -- the data --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "port", "feature", "required"),
    [
        # the seed platform's required services
        pytest.param("auth.carto.com", 443, "core", True, id="auth"),
        pytest.param("*.self-hosted.carto.com", 443, "core", True, id="releases"),
        pytest.param("docker.io", 443, "core", True, id="docker-io"),
        # §4.2 core (2023)
        pytest.param("bigquery.googleapis.com", 443, "core", True, id="core-bigquery"),
        pytest.param("cloudresourcemanager.googleapis.com", 443, "core", True, id="crm"),
        pytest.param("gcr.io", 443, "core", True, id="gcr"),
        pytest.param("iamcredentials.googleapis.com", 443, "core", True, id="iam"),
        pytest.param("logging.googleapis.com", 443, "core", True, id="logging"),
        pytest.param("pubsub.googleapis.com", 443, "core", True, id="pubsub"),
        pytest.param("storage.googleapis.com", 443, "core", True, id="storage"),
        pytest.param("tools.google.com", 443, "core", True, id="tools"),
        pytest.param("www.googleapis.com", 443, "core", True, id="www-googleapis"),
        pytest.param("clientstream.launchdarkly.com", 443, "core", True, id="ld-clientstream"),
        pytest.param("events.launchdarkly.com", 443, "core", True, id="ld-events"),
        pytest.param("stream.launchdarkly.com", 443, "core", True, id="ld-stream"),
        pytest.param("us-docker.pkg.dev", 443, "core", True, id="images-registry"),
        # §4.1 cloud and warehouse specific
        pytest.param("oauth2.googleapis.com", 443, "bigquery", True, id="bq-oauth2"),
        pytest.param("bigquerydatatransfer.googleapis.com", 443, "bigquery", True, id="bq-dts"),
        pytest.param("*.snowflakecomputing.com", 443, "snowflake", True, id="snowflake"),
        pytest.param("*.cloud.databricks.com", 443, "databricks", True, id="databricks"),
        pytest.param("*.redshift.amazonaws.com", 5439, "redshift", True, id="redshift"),
        pytest.param("*", 5432, "postgres", True, id="postgres"),
        pytest.param("*.amazonaws.com", 443, "aws-s3", False, id="s3"),
        pytest.param("*.blob.core.windows.net", 443, "azure-blob", False, id="azure-blob"),
        pytest.param("storage.googleapis.com", 443, "gcs", False, id="gcs"),
        # §4.2 optional features
        pytest.param("api.tomtom.com", 443, "geocoding-tomtom", False, id="tomtom"),
        pytest.param("api.mapbox.com", 443, "geocoding-mapbox", False, id="mapbox"),
        pytest.param("isoline.router.hereapi.com", 443, "geocoding-here", False, id="here"),
        pytest.param("maps.googleapis.com", 443, "google-maps", False, id="google-maps"),
        pytest.param("sqladmin.googleapis.com", 443, "google-cloud-sql", False, id="cloud-sql"),
        pytest.param("oauth2.googleapis.com", 443, "bigquery-oauth", False, id="bq-oauth"),
        pytest.param("gcp-us-east1.api.carto.com", 443, "demo-maps", False, id="demo-maps"),
        pytest.param("o.ss2.us", 80, "snowflake", False, id="snowflake-ocsp"),
    ],
)
def test_catalog_lists_the_reference_destinations(
    host: str, port: int, feature: str, required: bool
) -> None:
    found = [
        d
        for d in load_catalog().destinations
        if (d.host, d.port, d.feature) == (host, port, feature)
    ]
    assert len(found) == 1
    assert found[0].required is required
    assert found[0].purpose


def test_every_destination_is_well_formed() -> None:
    catalog = load_catalog()
    assert catalog.destinations
    for d in catalog.destinations:
        assert d.feature in catalog.groups
        assert d.source, d.destination
        if d.wildcard:
            assert d.sample, d.destination
        if d.domain:
            covered = NoProxyMatcher.parse(d.domain).match(canonical_host(d.probe_host), d.port)
            assert covered is not None, d.destination
        if d.warehouse:
            assert d.warehouse in WAREHOUSES
    groups = catalog.groups
    assert groups["core"].scope == "always"
    assert {g.warehouse for g in groups.values() if g.scope == "warehouse"} == set(WAREHOUSES)


def test_known_features_are_the_feature_groups() -> None:
    assert known_features() == FEATURES
    assert not set(known_features()) & set(WAREHOUSES)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        pytest.param(
            {"groups": {"core": {"scope": "sometimes", "title": "x"}}, "destinations": []},
            "scope",
            id="bad-scope",
        ),
        pytest.param(
            {"groups": {"w": {"scope": "warehouse", "title": "x"}}, "destinations": []},
            "warehouse",
            id="warehouse-group-without-warehouse",
        ),
        pytest.param(
            {
                "groups": {"core": {"scope": "always", "title": "x"}},
                "destinations": [
                    {"host": "a.example", "port": 443, "feature": "nope", "required": True,
                     "purpose": "p"}
                ],
            },
            "unknown group",
            id="unknown-group",
        ),
        pytest.param(
            {
                "groups": {"core": {"scope": "always", "title": "x"}},
                "destinations": [
                    {"host": "*.example.com", "port": 443, "feature": "core", "required": True,
                     "purpose": "p"}
                ],
            },
            "sample",
            id="wildcard-without-sample",
        ),
        pytest.param(
            {
                "groups": {"core": {"scope": "always", "title": "x"}},
                "destinations": [
                    {"host": "*.example.com", "sample": "example.org", "port": 443,
                     "feature": "core", "required": True, "purpose": "p"}
                ],
            },
            "not under",
            id="sample-outside-wildcard",
        ),
    ],
)  # fmt: skip
def test_bad_catalog_data_is_refused(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(CatalogError, match=message):
        _parse(raw)


# -- scope -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "features", "present", "absent"),
    [
        pytest.param(
            {"warehouses": ["bigquery"]},
            None,
            {"core", "bigquery"},
            {"snowflake", "databricks", "redshift", "postgres", "geocoding-tomtom"},
            id="one-warehouse",
        ),
        pytest.param(
            {"warehouses": []}, None, {"core"}, {"bigquery", "snowflake"}, id="no-warehouse"
        ),
        pytest.param(
            {"warehouses": ["snowflake"], "features": ["core", "geocoding-tomtom"]},
            None,
            {"core", "snowflake", "geocoding-tomtom"},
            {"geocoding-mapbox", "bigquery"},
            id="settings-features",
        ),
        pytest.param(
            {"warehouses": [], "features": ["geocoding-tomtom"]},
            ("aws-s3",),
            {"core", "aws-s3"},
            {"geocoding-tomtom"},
            id="override-replaces-and-core-stays",
        ),
        pytest.param({}, FEATURES, set(FEATURES), set(), id="every-feature"),
    ],
)
def test_groups_in_scope(
    raw: dict[str, Any],
    features: tuple[str, ...] | None,
    present: set[str],
    absent: set[str],
) -> None:
    rows = in_scope(make({"proxy": {"url": "http://p:3128"}, **raw}), features)
    groups = {row.feature for row in rows} | {g for row in rows for g in row.also_in}
    assert present <= groups
    assert not absent & groups


def test_each_destination_once_first_group_wins() -> None:
    rows = in_scope(HTTP, FEATURES)
    keys = [(r.host, r.port) for r in rows]
    assert len(keys) == len(set(keys))
    www = by_destination(rows)["www.googleapis.com:443"]
    assert (www.feature, www.also_in, www.required) == ("core", ("bigquery", "gcs"), True)
    oauth = by_destination(rows)["oauth2.googleapis.com:443"]
    assert (oauth.feature, oauth.also_in, oauth.required) == ("bigquery", ("bigquery-oauth",), True)
    # without the bigquery warehouse, oauth2 is only the optional bigquery-oauth feature
    alone = make({"proxy": {"url": "http://p:3128"}, "warehouses": []})
    oauth = by_destination(in_scope(alone, ("bigquery-oauth",)))["oauth2.googleapis.com:443"]
    assert (oauth.feature, oauth.required) == ("bigquery-oauth", False)


def test_unknown_features_raise_one_problem_listing_the_known_ones() -> None:
    with pytest.raises(ConfigError) as info:
        in_scope(HTTP, ("core", "geocoding", "snowflake"))
    (problem,) = info.value.problems
    assert problem.field == "--features"
    assert '"geocoding", "snowflake" are not known feature groups' in problem.message
    assert all(name in problem.message for name in FEATURES)
    assert "warehouses (snowflake)" in problem.hint
    # settings built around validation (loaders may refuse unknown features themselves)
    bad = replace(HTTP, features=("tomtom",))
    with pytest.raises(ConfigError) as info:
        in_scope(bad)
    assert [p.field for p in info.value.problems] == ["features"]


@pytest.mark.parametrize(
    ("features", "count"),
    [
        pytest.param([], 0, id="empty"),
        pytest.param(["core"], 0, id="core"),
        pytest.param(list(FEATURES), 0, id="all"),
        pytest.param(["x"], 1, id="one-unknown"),
        pytest.param(["x", "y", "x"], 1, id="several-unknown-one-problem"),
        pytest.param(["bigquery"], 1, id="warehouse-name"),
    ],
)
def test_check_features(features: list[str], count: int) -> None:
    problems = check_features(features)
    assert len(problems) == count
    if problems:
        assert problems[0].field == "features"
        assert "core, gcs" in problems[0].message


# -- routes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "destination", "route", "rule"),
    [
        pytest.param(HTTP, "auth.carto.com:443", "proxy", "default", id="core-http"),
        pytest.param(HTTPS, "auth.carto.com:443", "proxy", "default", id="core-https"),
        pytest.param(
            HTTP, "*.snowflakecomputing.com:443", "proxy", "warehouse:snowflake", id="S12-http"
        ),
        pytest.param(
            HTTPS, "*.snowflakecomputing.com:443", "direct", "warehouse:snowflake", id="S12-https"
        ),
        pytest.param(
            HTTPS, "bigquery.googleapis.com:443", "proxy", "warehouse:bigquery", id="S9-https"
        ),
        pytest.param(
            HTTP, "*.cloud.databricks.com:443", "direct", "warehouse:databricks", id="S11"
        ),
        pytest.param(
            HTTP, "*.redshift.amazonaws.com:5439", "direct", "warehouse:redshift", id="S10-redshift"
        ),
        pytest.param(HTTP, "*:5432", "direct", "warehouse:postgres", id="S10-postgres"),
        pytest.param(
            TUNNEL, "*.redshift.amazonaws.com:5439", "tunnel", "warehouse:redshift", id="tunnel"
        ),
        pytest.param(
            make({"proxy": {"url": "http://p:3128"}, "excluded_domains": [".carto.com"]}),
            "auth.carto.com:443",
            "direct",
            "excluded:.carto.com",
            id="excluded",
        ),
        pytest.param(Settings(), "auth.carto.com:443", "direct", "proxy-disabled", id="no-proxy"),
    ],
)
def test_rows_carry_the_routers_decision(
    settings: Settings, destination: str, route: str, rule: str
) -> None:
    row = by_destination(in_scope(settings))[destination]
    assert (row.route, row.rule) == (route, rule)
    assert row.decision == settings.router().decide(row.url, warehouse=row.warehouse)


@pytest.mark.parametrize(
    ("destination", "url"),
    [
        pytest.param("auth.carto.com:443", "https://auth.carto.com/", id="name"),
        pytest.param(
            "*.snowflakecomputing.com:443", "https://acme.snowflakecomputing.com/", id="wildcard"
        ),
        pytest.param(
            "*.redshift.amazonaws.com:5439",
            "redshift://acme.abc123.us-east-1.redshift.amazonaws.com/",
            id="tcp-default-port",
        ),
        pytest.param("*:5432", "postgresql://postgres.customer.example/", id="any-host"),
        pytest.param("o.ss2.us:80", "http://o.ss2.us/", id="plain-http"),
    ],
)
def test_representative_urls(destination: str, url: str) -> None:
    row = by_destination(in_scope(HTTP))[destination]
    assert row.url == url
    assert row.sample is ("*" in destination)


def test_as_dict_is_json() -> None:
    row = by_destination(in_scope(HTTPS))["*.snowflakecomputing.com:443"]
    data = json.loads(json.dumps(row.as_dict()))
    assert data == {
        "destination": "*.snowflakecomputing.com:443",
        "host": "*.snowflakecomputing.com",
        "port": 443,
        "url": "https://acme.snowflakecomputing.com/",
        "sample": True,
        "feature": "snowflake",
        "also_in": [],
        "required": True,
        "purpose": row.purpose,
        "warehouse": "snowflake",
        "route": "direct",
        "proxy": None,
        "rule": "warehouse:snowflake",
        "reason": row.reason,
    }


# -- through the command line -------------------------------------------------------------------


def test_cli_catalog_unknown_feature_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["catalog", "--config", str(EXAMPLE), "--features", "core,nope"])
    _, err = capsys.readouterr()
    assert code == 3
    assert '"nope" is not a known feature group' in err and "geocoding-tomtom" in err


def test_cli_catalog_json(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["catalog", "--config", str(EXAMPLE), "--json", "--features", "demo-maps"])
    out, _ = capsys.readouterr()
    assert code == 0
    rows = {row["destination"]: row for row in json.loads(out)}
    assert rows["gcp-us-east1.api.carto.com:443"]["route"] == "proxy"
    assert rows["*.snowflakecomputing.com:443"]["route"] == "direct"  # example: https proxy


# -- the import graph: data below, decisions above -------------------------------------------------

SRC = Path(__file__).parents[2] / "src" / "egress"


def egress_imports(path: Path) -> set[str]:
    """Every ``egress.*`` module ``path`` imports, at module level or inside functions."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("egress"):
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.startswith("egress"))
    return names


def test_catalog_is_data_only() -> None:
    """The catalog knows nothing of settings, the router or scope, so no cycle can form."""
    assert egress_imports(SRC / "catalog.py") <= {
        "egress.errors",
        "egress.noproxy",
        "egress.warehouses",
    }


def test_settings_never_import_scope_or_router_at_import_time() -> None:
    for module in sorted((SRC / "settings").glob("*.py")):
        tree = ast.parse(module.read_text(encoding="utf-8"))
        top_level = {
            node.module for node in tree.body if isinstance(node, ast.ImportFrom) and node.module
        }
        assert not top_level & {"egress.scope", "egress.router", "egress.render"}, module.name
    assert "egress.settings" in egress_imports(SRC / "scope.py")
