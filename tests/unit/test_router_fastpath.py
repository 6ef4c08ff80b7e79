"""The router's fast path and memo change no answer; no decision or error carries a password.

The fast path (``_parse_simple``) reads the common ``scheme://host[:port]/...`` shape with string
methods and one regular expression, the memo is keyed on the origin (or on the parsed target),
and every Decision is rebuilt around the URL of its own call. Each must agree with the full
parse and an uncached decision on any URL, which Hypothesis generates here.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from egress import URLError
from egress.cli import main as cli_main
from egress.noproxy import Entry, NoProxyMatcher, canonical_host
from egress.router import (
    MEMO_SIZE,
    Decision,
    Router,
    Target,
    _parse_full,
    _parse_simple,
    parse_target,
)
from egress.settings import load_settings_from_mapping

ROUTER = load_settings_from_mapping(
    {
        "proxy": {"enabled": True, "url": "http://proxy.corp:3128", "https_url": "https://p:3129"},
        "excluded_domains": [
            ".corp.example",
            "git.example.com",
            "10.0.0.0/8",
            "internal.example:8443",
            "xn--bcher-kva.example",
            "[2001:db8::1]",
        ],
        "deployment": {"service_ip": "10.96.0.1", "gke_workload_identity": True},
        "tunnel_tcp_warehouses": True,
    },
    env={},
).router()

# -- generated URLs ---------------------------------------------------------------------------

LABEL = st.text("abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=12)
NAME = st.lists(LABEL, min_size=1, max_size=4).map(".".join)
KNOWN_NAMES = st.sampled_from(
    [
        "git.example.com",
        "a.corp.example",
        "corp.example",
        "internal.example",
        "acme.snowflakecomputing.com",
        "dbc-1.cloud.databricks.com",
        "c1.abc.redshift.amazonaws.com",
        "bigquery.googleapis.com",
        "localhost",
        "metadata",
        "api.svc",
        "x.svc.cluster.local",
    ]
)
HOST = st.one_of(
    NAME,
    KNOWN_NAMES,
    NAME.map(str.upper),
    NAME.map(lambda n: n + "."),
    NAME.map(lambda n: "." + n),
    NAME.map(lambda n: n.replace(".", "..", 1)),
    st.sampled_from(["bücher.example", "BÜCHER.example", "例え.テスト", "xn--bcher-kva.example"]),
    st.ip_addresses(v=4).map(str),
    st.tuples(*[st.integers(0, 300)] * 4).map(lambda t: ".".join(map(str, t))),
    st.sampled_from(["127.1", "0x7f.0.0.1", "2130706433", "010.0.0.1", "1.2.3", "1.2.3.4.5"]),
    st.ip_addresses(v=6).map(lambda a: f"[{a}]"),
    st.sampled_from(["[::1]", "[::ffff:10.1.2.3]", "[fe80::1%25eth0]", "[2001:db8::1]", "[zz]"]),
    st.text(min_size=0, max_size=6),
    st.just("a" * 64 + ".example"),
    st.just(("a" * 60 + ".") * 5 + "com"),
)
SCHEME = st.sampled_from(
    [
        *("https", "http", "ws", "wss", "postgresql", "postgres", "redshift", "snowflake"),
        *("bigquery", "databricks", "HTTPS", "Http", "ftp", "file", "git+ssh", "1http", ""),
    ]
)
PORT = st.one_of(
    st.just(""),
    st.integers(1, 65535).map(lambda p: f":{p}"),
    st.sampled_from([":0", ":65536", ":99999", ":443", ":8443", ":00443", ":", ":x", ":１２"]),
)
SECRET_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789/@:?#%"
USERINFO = st.one_of(
    st.just(""),
    st.sampled_from(["u@", "u:pw@", "bob@corp.example:pw@", ":p@ss@", "u:pa/ss@", "u:p:w@"]),
    st.tuples(LABEL, st.text(SECRET_CHARS, min_size=1, max_size=10)).map(
        lambda up: f"{up[0]}:{up[1]}@"
    ),
)
TAIL = st.one_of(
    st.just(""),
    st.just("/"),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12).map(
        lambda t: "/" + t
    ),
    st.sampled_from(["/a/b?x=1&y=2", "?q=1", "#frag", "/p?q#f", "/@scope/pkg", "/a b", "/\r\n"]),
)

PATH = st.from_regex(
    r"/[a-zA-Z0-9/._~%!$&'()*+,;=:@-]*(\?[a-z0-9=&/?]*)?(#[a-z/?#]*)?", fullmatch=True
)


@st.composite
def any_urls(draw: st.DrawFn) -> str:
    scheme = draw(SCHEME)
    sep = draw(st.sampled_from(["://", "://", "://", ":/", ""]))
    return scheme + sep + draw(USERINFO) + draw(HOST) + draw(PORT) + draw(TAIL)


@st.composite
def common_urls(draw: st.DrawFn) -> str:
    """Mostly the shape the fast path reads, with the odd character that sends it away."""
    scheme = draw(st.sampled_from(["https", "http", "wss", "postgresql", "redshift", "ws"]))
    host = draw(st.one_of(NAME, KNOWN_NAMES, st.ip_addresses(v=4).map(str), HOST))
    userinfo = draw(st.sampled_from(["", "", "", "", "", "", "u:pw@", "u@"]))
    port = draw(st.one_of(st.just(""), st.integers(1, 65535).map(lambda p: f":{p}"), PORT))
    tail = draw(st.one_of(st.just(""), PATH, PATH, TAIL))
    return f"{scheme}://{userinfo}{host}{port}{tail}"


def urls() -> st.SearchStrategy[str]:
    return st.one_of(common_urls(), common_urls(), any_urls())


def _outcome(func: Any, *args: Any, **kwargs: Any) -> object:
    try:
        return func(*args, **kwargs)
    except URLError as exc:
        return ("URLError", str(exc))


# -- the fast path agrees with the full parse -------------------------------------------------


@settings(max_examples=1500, deadline=None)
@given(urls())
def test_fast_parse_gives_the_full_parse_answer(url: str) -> None:
    fast = _parse_simple(url)
    full = _outcome(_parse_full, url)
    if fast is not None:
        assert fast == full
        assert type(fast.host) is type(full.host)  # type: ignore[union-attr]
    assert _outcome(parse_target, url) == full


@pytest.mark.parametrize(
    "url",
    [
        "https://api.example.com/",
        "https://api.example.com",
        "http://10.1.2.3:8080/x?y=1#z",
        "postgresql://db.example.com/app",
        "wss://events.example.com:443/socket",
        "https://example.com./",
        "https://127.1/",
        "https://a_b-c.example/@scope/pkg",
    ],
)
def test_common_shapes_take_the_fast_path(url: str) -> None:
    target = _parse_simple(url)
    assert target is not None and target == _parse_full(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://u:pw@api.example.com/",
        "https://API.example.com/",
        "HTTPS://api.example.com/",
        "https://[::1]/",
        "https://bücher.example/",
        "https://api.example.com?x=1",
        "https://api.example.com:/",
        "https://api.example.com:0/",
        "https://.example.com/",
        "api.example.com",
        "ftp://files.example.com/",
        "https://api.example.com/a b",
    ],
)
def test_unusual_shapes_take_the_full_path(url: str) -> None:
    assert _parse_simple(url) is None


# -- the memo agrees with an uncached decision ------------------------------------------------


@settings(max_examples=800, deadline=None)
@given(urls(), st.sampled_from([None, "postgres", "Databricks", "snowflake", "oracle"]))
def test_decide_gives_the_uncached_answer(url: str, warehouse: str | None) -> None:
    router = Router(ROUTER.settings)
    want = _outcome(router.decide_uncached, url, warehouse)
    assert _outcome(router.decide, url, warehouse=warehouse) == want
    assert _outcome(router.decide, url, warehouse=warehouse) == want, "memo hit"
    assert _outcome(ROUTER.decide, url, warehouse=warehouse) == want, "shared, warm router"


@settings(max_examples=300, deadline=None)
@given(urls(), st.lists(TAIL, min_size=1, max_size=4))
def test_known_destination_new_paths(url: str, tails: list[str]) -> None:
    """After one URL to a destination, others with new paths get their own URL in the answer."""
    router = Router(ROUTER.settings)
    _outcome(router.decide, url)
    base = url.split("/")[:3]
    for tail in tails:
        other = "/".join(base) + tail
        assert _outcome(router.decide, other) == _outcome(router.decide_uncached, other)


@pytest.mark.parametrize(
    "url",
    [
        "https://api.example.com/v1",  # the key is the origin: matched whole
        "https://api.example.com",  # no path
        "http://a.corp.example:8080/x",
        "http://10.1.2.3/",  # a dotted quad: read without canonical_host
        "http://10.1.2.3:8080",
        "https://192.168.0.1/x",
        "https://127.1/",  # an IPv4 address written otherwise: canonical_host
        "https://example.com./",  # a trailing dot: canonical_host
        "https://internal.example:8443/",  # an entry with a port, on that port
        "https://internal.example:443/",  # and on another
        "https://h:0/",  # port out of range: the full parse says so
        "https://h:65536/x",
        "https://" + "a" * 60 + "." + "b" * 60 + "." + "c" * 60 + "." + "d" * 60 + ".e/",  # > 253
        "postgresql://db.example.com/app",  # a long scheme: the first key is not the origin
        "postgresql://db.example.com",
        "redshift://c1.abc.redshift.amazonaws.com:5439/dev",
        "snowflake://acme.snowflakecomputing.com/",
        "databricks://dbc-1.cloud.databricks.com",
        "ws://a/b/c",  # a one-letter host: the first key runs past the origin
        "wss://a",
        "ws://ab/",
        "http:///x",  # no host
        "https://API.example.com/",  # upper case: the full parse
        "https://u:pw@api.example.com/",  # userinfo: the full parse, masked
        "https://api.example.com/@scope/pkg",  # '@' in the path only
        "https://localhost/",
        "https://metadata/x",  # a single label
        "https://x.svc/",
        "https://deep.a.corp.example/",
        "https://cdn.x.y.example.com/",  # unlisted: the walk below the parent
    ],
)
def test_every_branch_of_the_miss_path(url: str) -> None:
    """Each branch of ``decide``'s memo miss gives the uncached answer, cold and warm, and a
    sibling URL of the same origin is answered from the memo with its own URL."""
    router = Router(ROUTER.settings)
    want = _outcome(router.decide_uncached, url)
    assert _outcome(router.decide, url) == want, "cold"
    assert _outcome(router.decide, url) == want, "warm"
    sibling = url + ("x" if url.endswith("/") else "/x")
    assert _outcome(router.decide, sibling) == _outcome(router.decide_uncached, sibling)


def test_memo_keys_are_origins() -> None:
    """Whatever the scheme, the memo keeps the origin text (or the parsed target), never a key
    that ends inside the scheme's "://" or runs past the host."""
    router = Router(ROUTER.settings)
    for url in [
        "postgresql://db.example.com/app",
        "ws://a/b/c",
        "https://api.example.com/v1/x",
        "oracle://o.example.com/x",  # not a known scheme: the full parse, keyed on the target
    ]:
        _outcome(router.decide, url)
    text_keys = {k for k in router._memo if isinstance(k, str)}
    assert text_keys == {"postgresql://db.example.com", "ws://a", "https://api.example.com"}
    assert any(
        isinstance(k, tuple) and k[0] == Target("oracle", "o.example.com", None)
        for k in router._memo
    )


def test_each_decision_carries_its_own_url() -> None:
    router = Router(ROUTER.settings)
    first = router.decide("https://api.example.com/v1/a?x=1")
    second = router.decide("https://api.example.com/v1/b?x=2")
    assert first.url == "https://api.example.com/v1/a?x=1"
    assert second.url == "https://api.example.com/v1/b?x=2"
    assert first[1:] == second[1:]
    assert second.target is first.target, "the destination is shared, not parsed again"
    again = router.decide("https://API.example.com:443/c")  # full path, same destination
    assert (again.url, again[1:]) == ("https://API.example.com:443/c", first[1:])


def test_memo_is_bounded() -> None:
    router = Router(ROUTER.settings)
    for i in range(3 * MEMO_SIZE):
        router.decide(f"https://h{i}.example.org/x")
        router.decide(f"https://H{i}.example.org/x")  # full path: keyed on the target
    assert len(router._memo) <= MEMO_SIZE
    assert router.decide("https://h0.example.org/y").url == "https://h0.example.org/y"


def test_same_rule_many_hosts() -> None:
    """The rule's outcome is kept once; each host still gets its own reason."""
    router = Router(ROUTER.settings)
    a = router.decide("https://a.corp.example/")
    b = router.decide("https://b.corp.example/")
    ip = router.decide("http://10.9.8.7/")
    assert (a.rule, b.rule, ip.rule) == ("excluded:.corp.example",) * 2 + ("excluded:10.0.0.0/8",)
    assert a.reason.startswith("a.corp.example goes direct")
    assert b.reason.startswith("b.corp.example goes direct")
    assert ip.reason.startswith("10.9.8.7 goes direct")
    tunnel = router.decide("postgresql://db.example.com/app")
    assert tunnel.route == "tunnel" and "db.example.com" in tunnel.reason


# -- no password in any decision, target, repr or error ---------------------------------------

SECRET = "s3cretPW"


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://u:{SECRET}@db/app",
        f"https://u:{SECRET}@api.example.com/x",
        f"https://bob@corp.example:{SECRET}@api.example.com/",
        f"https://u:{SECRET}@a.corp.example/",
        f"https://u:{SECRET[:4]}@{SECRET[4:]}@api.example.com/",
        f"https://u:{SECRET[:4]}:{SECRET[4:]}@api.example.com/",
        f"https://U:{SECRET}@API.Example.com:443/",
        f"https://u:{SECRET}@[2001:db8::1]:8443/",
        f"https://u:{SECRET}@api.example.com/path@with-at",
    ],
)
def test_no_password_in_a_decision(url: str) -> None:
    for decision in (ROUTER.decide(url), ROUTER.decide(url), ROUTER.decide_uncached(url)):
        shown = [
            repr(decision),
            str(decision),
            json.dumps(decision.as_dict()),
            repr(decision.target),
            decision.target.authority,
        ]
        for text in shown:
            assert SECRET not in text
            assert SECRET[:4] not in text and SECRET[4:] not in text
        assert "********" in decision.url


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://u:{SECRET[:4]}/{SECRET[4:]}@db/app",
        f"https://u:{SECRET[:4]}?{SECRET[4:]}@api.example.com/",
        f"https://u:{SECRET[:4]}#{SECRET[4:]}@api.example.com/",
        f"https://u:{SECRET}@exa mple.com/",
        f"https://u:{SECRET}@api.example.com:99999/",
        f"https://u:{SECRET}@api.example.com:0/",
        f"https://u:{SECRET}@[zz]/",
        f"https://u:{SECRET}@/x",
        f"https://u:{SECRET}@.example.com/",
        f"https://u:{SECRET}@bad!host/",
        f"file://u:{SECRET}@host/etc/passwd",
    ],
)
def test_no_password_in_an_error(url: str) -> None:
    for call in (ROUTER.decide, ROUTER.decide_uncached, parse_target):
        with pytest.raises(URLError) as caught:
            call(url)
        for text in (str(caught.value), repr(caught.value), caught.value.hint):
            assert SECRET not in text
            assert SECRET[:4] not in text and SECRET[4:] not in text


def test_password_with_a_slash_is_named() -> None:
    with pytest.raises(URLError) as caught:
        ROUTER.decide(f"postgresql://u:{SECRET[:4]}/{SECRET[4:]}@db/app")
    assert "percent-encode" in caught.value.hint
    assert '"postgresql://u:********@db/app"' in str(caught.value)


def test_cli_explain_json_shows_no_password(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli_main(
        ["explain", f"postgresql://u:{SECRET}@db/app", "--proxy", "http://p:3128", "--json"]
    )
    out, err = capsys.readouterr()
    assert code == 0
    assert SECRET not in out + err
    assert json.loads(out)["url"] == "postgresql://u:********@db/app"


def test_target_has_no_url() -> None:
    assert Target._fields == ("scheme", "host", "port")
    assert Decision._fields[0] == "url"


# -- parse_target: one clear sentence and hint per mistake ------------------------------------


@pytest.mark.parametrize(
    ("url", "says", "hint"),
    [
        pytest.param("https://example.com:0/", "port", "1 to 65535", id="port-0"),
        pytest.param("https://example.com:65536/", "port", "1 to 65535", id="port-too-big"),
        pytest.param("https://example.com:" + "9" * 5000 + "/", "port", "1 to 65535", id="huge"),
        pytest.param("file:///etc/passwd", "file:// URL", "URL of a server", id="file"),
        pytest.param("FILE://host/x", "file:// URL", "URL of a server", id="file-with-host"),
        pytest.param(".example.com", "starts with a dot", "remove the dot", id="leading-dot"),
        pytest.param("https://.example.com/", "starts with a dot", "remove the dot", id="dot"),
        pytest.param("https:///path", "has no host", "https://host/", id="no-host"),
        pytest.param("https://exa mple.com/", "spaces or control", "remove them", id="space"),
        pytest.param("https://example.com\r\nX: y/", "spaces or control", "remove", id="crlf"),
        pytest.param("https://a\x00b/", "spaces or control", "remove them", id="nul"),
        pytest.param("https://[zz]/", "cannot be read", "in brackets", id="brackets"),
        pytest.param("https://bad!host/", "invalid host", "fix the host", id="bad-character"),
    ],
)
def test_parse_target_errors(url: str, says: str, hint: str) -> None:
    with pytest.raises(URLError) as caught:
        parse_target(url)
    message = str(caught.value)
    assert says in message and hint in caught.value.hint
    assert message.endswith(caught.value.hint), "the message carries its fix"
    assert "\r" not in message and "\n" not in message and "\x00" not in message
    assert len(message) < 400


def test_port_bounds() -> None:
    assert parse_target("https://example.com:1/").port == 1
    assert parse_target("https://example.com:65535/").port == 65535
    assert parse_target("https://example.com:00443/").port == 443


@given(st.text(min_size=1, max_size=40))
@settings(deadline=None)
def test_any_text_routes_or_refuses(text: str) -> None:
    """Any string gets a Decision or a URLError: never another exception."""
    outcome = _outcome(ROUTER.decide, text)
    assert isinstance(outcome, Decision) or outcome[0] == "URLError"  # type: ignore[index]


# -- the matcher's answer by position agrees with a plain scan -------------------------------

SMALL_NAMES = st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=4).map(".".join)
SMALL_PORTS = st.sampled_from([None, 80, 443])


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(SMALL_NAMES, SMALL_PORTS).map(
                lambda t: t[0] if t[1] is None else f"{t[0]}:{t[1]}"
            ),
            st.sampled_from(["*", "10.0.0.0/8", "10.1.2.3", "10.1.2.3:443", "10.1.0.0/16"]),
        ),
        max_size=8,
    ),
    st.one_of(SMALL_NAMES, st.sampled_from(["10.1.2.3", "10.9.9.9", "11.0.0.1"])),
    SMALL_PORTS,
)
def test_matcher_index_agrees_with_a_plain_scan(
    tokens: list[str], host_text: str, port: int | None
) -> None:
    """``index``, ``name_index`` and ``ipv4_index`` (a "*" entry, ports, one-candidate keys and
    the walk below the parent included) give the first entry that covers the host."""
    matcher = NoProxyMatcher.parse(tokens)
    host = canonical_host(host_text)

    def covers(entry: Entry) -> bool:
        if entry.port not in (None, port):
            return False
        if entry.kind == "all":
            return True
        if isinstance(host, str):
            return entry.kind == "domain" and (
                host == entry.value or host.endswith("." + entry.value)
            )
        return entry.kind != "domain" and host in ipaddress.ip_network(entry.value)

    want = next((i for i, e in enumerate(matcher.entries) if covers(e)), -1)
    assert matcher.index(host, port) == want
    assert matcher.match(host, port) == (matcher.entries[want] if want >= 0 else None)
    if isinstance(host, str):
        assert matcher.name_index(host, port) == want
    else:
        assert matcher.ipv4_index(int(host), port) == want
