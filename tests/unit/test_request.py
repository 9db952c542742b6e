"""The L7 request-head parser and rule matching (pure), with fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cluster.l7.request import (
    BadRequest,
    RequestHead,
    matches,
    normalize_path,
    parse_head,
    select_rule,
)
from cluster.limits import MAX_HEAD_BYTES
from cluster.model import CookieMatch, HeaderMatch, Match, Mode, Pool, Rule, ServiceSpec

HEAD = (
    b"GET /static/app.js?v=2 HTTP/1.1\r\nHost: Shop.Example:8080\r\nX-Tenant: blue\r\n"
    b'Cookie: a=1; session=abc; b="q"\r\n\r\n'
)


def test_a_complete_head_is_parsed_and_what_follows_is_left_alone() -> None:
    head = parse_head(HEAD + b"GET /next HTTP/1.1\r\n")  # a pipelined second request
    assert isinstance(head, RequestHead)
    assert (head.method, head.path, head.target) == ("GET", "/static/app.js", "/static/app.js?v=2")
    assert head.host == "shop.example" and head.header("x-tenant") == "blue"
    assert head.cookies == {"a": "1", "session": "abc", "b": "q"}
    assert head.length == len(HEAD)


def test_an_incomplete_head_asks_for_more() -> None:
    assert parse_head(HEAD[:-2]) is None


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nno colon here\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nbad name: x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n" + b"X-A: b\r\n" * 101 + b"\r\n", 431),
        (b"GET / HTTP/1.1\r\nX-Big: " + b"a" * MAX_HEAD_BYTES + b"\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\nX-Big: " + b"a" * MAX_HEAD_BYTES, 431),  # too big, still no end
        # RFC 9112: routing and smuggling
        (b"GET / HTTP/1.1\r\n\r\n", 400),  # no Host
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET / HTTP/1.0\r\nHost: a\r\nhost: a\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n",
            400,
        ),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n  folded\r\n\r\n", 400),  # obs-fold
        (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),  # space before the colon
        (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x00c\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n", 400),
        (b"GET /a\x7fb HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET http://u@evil/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ],
)
def test_malformed_or_oversized_heads_get_the_status_to_answer(raw: bytes, status: int) -> None:
    with pytest.raises(BadRequest) as e:
        parse_head(raw)
    assert e.value.status == status


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_any_bytes_give_a_head_none_or_bad_request_never_another_error(raw: bytes) -> None:
    status = 0
    try:
        head = parse_head(raw)
    except BadRequest as e:
        status, head = e.status, None
    assert status in (0, 400, 431)
    assert head is None or head.length <= len(raw)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["GET", "POST", "PUT"]),
    st.from_regex(r"/[a-z0-9/._-]{0,40}", fullmatch=True),
    st.dictionaries(
        st.from_regex(r"x-[a-z]{1,10}", fullmatch=True),
        st.from_regex(r"[ -~]{0,30}", fullmatch=True).map(str.strip),
        max_size=10,
    ),
)
def test_well_formed_heads_round_trip(method: str, path: str, headers: dict[str, str]) -> None:
    raw = f"{method} {path} HTTP/1.1\r\nHost: h\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in headers.items()
    )
    head = parse_head((raw + "\r\n").encode())
    assert head is not None and (head.method, head.target) == (method, path)
    assert head.path == normalize_path(path)
    for k, v in headers.items():
        assert head.header(k) == v


def test_rules_match_in_order_and_all_criteria_must_hold() -> None:
    rules = (
        Rule("static", Match(path_prefix="/static"), Pool(("n1", "n2"))),
        Rule("blue", Match(header=HeaderMatch("X-Tenant", exact="blue")), Pool(("n3",))),
        Rule(
            "both", Match(host="shop.example", cookie=CookieMatch("session", "zzz")), Pool(("n4",))
        ),
        Rule("re", Match(path_regex=r"^/api/v[0-9]+/"), Pool(("n4",))),
    )
    spec = ServiceSpec("shop", "10.0.0.1", 8080, mode=Mode.L7, rules=rules)

    def rule_for(raw: bytes) -> str | None:
        head = parse_head(raw)
        assert head is not None
        rule = select_rule(spec, head)
        return rule.name if rule else None

    assert rule_for(HEAD) == "static"  # first match wins although "blue" holds too
    assert rule_for(b"GET /x HTTP/1.1\r\nHost: h\r\nX-Tenant: blue\r\n\r\n") == "blue"
    assert rule_for(b"GET /x HTTP/1.1\r\nHost: h\r\nX-Tenant: green\r\n\r\n") is None
    assert (
        rule_for(b"GET /x HTTP/1.1\r\nHost: shop.example\r\nCookie: session=zzz\r\n\r\n") == "both"
    )
    assert rule_for(b"GET /x HTTP/1.1\r\nHost: shop.example\r\nCookie: session=y\r\n\r\n") is None
    assert rule_for(b"GET /api/v2/items HTTP/1.1\r\nHost: h\r\n\r\n") == "re"
    head = parse_head(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert head is not None and matches(Match(), head)  # no criteria: always


def test_rules_see_the_normalized_path_and_the_server_the_original_bytes() -> None:
    spec = ServiceSpec(
        "shop",
        "10.0.0.1",
        8080,
        mode=Mode.L7,
        rules=(Rule("static", Match(path_prefix="/static/"), Pool(("n1",))),),
    )
    for target in ("/%73tatic/x", "/a/../static/x", "/./static/x", "/%73%74atic/x?q=1"):
        raw = f"GET {target} HTTP/1.1\r\nHost: h\r\n\r\n".encode()
        head = parse_head(raw)
        assert head is not None and head.target == target
        assert head.length == len(raw)
        rule = select_rule(spec, head)
        assert rule is not None and rule.name == "static", target
    assert normalize_path("/a/%2e%2e/b") == "/b"
    assert normalize_path("/%2f/%7e") == "/%2F/~"  # reserved stays escaped


def test_an_absolute_form_target_is_routed_by_its_path_and_authority() -> None:
    head = parse_head(b"GET http://Shop.Example:81/static/a?x HTTP/1.1\r\nHost: other\r\n\r\n")
    assert head is not None
    assert (head.path, head.host) == ("/static/a", "shop.example")


def test_a_worst_case_regex_against_a_worst_case_path_is_linear() -> None:
    """RE2: the pattern that froze the leader with Python's re takes milliseconds here."""
    import time

    spec = ServiceSpec(
        "shop",
        "10.0.0.1",
        8080,
        mode=Mode.L7,
        rules=(Rule("evil", Match(path_regex="^/(a+)+$"), Pool(("n1",))),),
    )
    raw = b"GET /" + b"a" * 15_000 + b"! HTTP/1.1\r\nHost: h\r\n\r\n"
    head = parse_head(raw)
    assert head is not None
    started = time.perf_counter()
    assert select_rule(spec, head) is None
    # Python's re needs about 2**15000 steps here; any bound at all proves linear time.
    assert time.perf_counter() - started < 1.0
