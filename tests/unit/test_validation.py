"""Validation and documents: every bad field is named with its path; valid specs round-trip."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cluster.documents import service_from_doc, service_to_doc, services_from_file_doc
from cluster.errors import ValidationError
from cluster.model import Mode, Policy, Pool, ServiceSpec
from cluster.sdk import convert
from cluster.validation import validate_service

L7 = {
    "name": "shop",
    "vip": "10.100.0.10",
    "port": 8080,
    "mode": "l7",
    "pool": "all",
    "policy": "round-robin",
    "persistence": "cookie:session",
    "health_check": {"type": "http", "path": "/healthz", "interval_s": 2, "timeout_s": 1},
    "rules": [
        {"name": "static", "match": {"path_prefix": "/static"}, "pool": ["n1", "n2"]},
        {
            "name": "blue",
            "match": {"header": {"name": "X-Tenant", "exact": "blue"}},
            "pool": ["n3"],
            "policy": "least-loaded",
        },
        {
            "name": "api",
            "match": {
                "path_regex": "^/api/v[0-9]+/",
                "host": "shop.example",
                "cookie": {"name": "beta", "value": "1"},
            },
            "pool": ["n1"],
        },
    ],
}


def problems_of(doc: object) -> tuple[str, ...]:
    with pytest.raises(ValidationError) as info:
        service_from_doc(doc)
    return info.value.problems


def with_(path: str, value: object) -> dict[str, object]:
    doc = copy.deepcopy(L7)
    target: object = doc
    *parents, last = path.split(".")
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]  # type: ignore[index]
    if isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value  # type: ignore[index]
    return doc


def test_a_valid_l7_spec_is_accepted_with_enums_normalized() -> None:
    spec = service_from_doc(L7)
    assert spec.mode is Mode.L7
    assert spec.policy is Policy.ROUND_ROBIN
    assert spec.rules[1].policy is Policy.LEAST_LOADED
    assert spec.rules[0].pool == Pool(nodes=("n1", "n2"))


def test_minimal_spec_gets_defaults() -> None:
    spec = service_from_doc({"name": "web", "vip": "10.0.0.1", "port": 80})
    assert spec == ServiceSpec(name="web", vip="10.0.0.1", port=80)
    assert spec.pool.all and spec.mode is Mode.L4 and spec.health_check.type == "tcp"


def test_port_out_of_range_names_the_field_path() -> None:
    assert problems_of(with_("port", 70000)) == ("services.shop.port: 70000 is not in 1..65535",)


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("name", "Web!", "services.Web!.name: 'Web!' is not a valid name"),
        ("vip", "10.0.0.300", "services.shop.vip: '10.0.0.300' is not an IPv4 address"),
        ("vip", "127.0.0.1", "services.shop.vip: 127.0.0.1 cannot be a VIP"),
        ("vip", "::1", "services.shop.vip: '::1' is not an IPv4 address"),
        ("port", 0, "services.shop.port: 0 is not in 1..65535"),
        ("port", "80", "services.shop.port: expected int, got str '80'"),
        ("port", True, "services.shop.port: expected int, got bool True"),
        ("protocol", "udp", "services.shop.protocol: 'udp' is not supported"),
        ("mode", "l3", "services.shop.mode: 'l3' is not one of 'l4', 'l7'"),
        ("policy", "random", "services.shop.policy: 'random' is not one of"),
        ("pool", [], "services.shop.pool: must be 'all' or a non-empty list"),
        ("pool", ["n1", "n1"], "services.shop.pool: node ids listed twice: n1"),
        ("pool", "some", "services.shop.pool: expected 'all' or a list of node ids"),
        ("pool", ["N 1"], "services.shop.pool[0]: 'N 1' is not a valid name"),
        ("persistence", "sticky", "services.shop.persistence: 'sticky' is not one of"),
        ("persistence", "cookie:", "services.shop.persistence: '' is not a valid cookie name"),
        ("health_check.type", "icmp", "services.shop.health_check.type: 'icmp' is not one of"),
        ("health_check.timeout_s", 5, "services.shop.health_check.timeout_s: 5.0 must be > 0"),
        ("health_check.interval_s", 0, "services.shop.health_check.interval_s: 0.0 is not in"),
        ("health_check.rise", 0, "services.shop.health_check.rise: 0 is not in 1..100"),
        ("health_check.path", "healthz", "services.shop.health_check.path: 'healthz' must st"),
        ("health_check.expect_status", 700, "services.shop.health_check.expect_status: 700"),
        ("health_check.port", -1, "services.shop.health_check.port: -1 is not in 0..65535"),
        ("health_check.bogus", 1, "services.shop.health_check.bogus: unknown field"),
        ("rules.0.match", {}, "services.shop.rules[0].match: needs at least one of"),
        ("rules.0.match", {"path_prefix": "static"}, "rules[0].match.path_prefix: 'static' must"),
        ("rules.0.match", {"path_regex": "(["}, "rules[0].match.path_regex: '([' is not a valid"),
        (
            "rules.1.match",
            {"header": {"name": "X-Tenant"}},
            "services.shop.rules[1].match.header: give exactly one of exact, regex",
        ),
        (
            "rules.1.match",
            {"header": {"name": "X Tenant", "exact": "a"}},
            "services.shop.rules[1].match.header.name: 'X Tenant' is not a valid header name",
        ),
        ("rules.1.name", "static", "services.shop.rules[1].name: 'static' is used by an earlier"),
        ("rules.1.policy", "fastest", "services.shop.rules[1].policy: 'fastest' is not one of"),
        ("rules.2.pool", [], "services.shop.rules[2].pool: must be 'all' or a non-empty list"),
        ("rules", {"a": 1}, "services.shop.rules: expected a list, got dict"),
        # linear-time rules and their limits
        (
            "rules.0.match",
            {"path_regex": "^/(a)\\1$"},
            "rules[0].match.path_regex: '^/(a)\\\\1$' is not a valid RE2 regular expression "
            "(invalid escape sequence",
        ),
        ("rules.0.match", {"path_regex": "(?=x)"}, "not a valid RE2 regular expression"),
        (
            "rules.0.match",
            {"path_regex": "a" * 1025},
            "rules[0].match.path_regex: the pattern has 1025 bytes, more than 1024",
        ),
        (
            "rules",
            [{"name": f"r{i}", "match": {"path_prefix": "/"}, "pool": "all"} for i in range(257)],
            "services.shop.rules: 257 rules, more than 256",
        ),
        # a rule's servers must be the service's (only those check the service)
        (
            "pool",
            ["n1", "n2"],
            "services.shop.rules[1].pool[0]: 'n3' is not in the service's pool",
        ),
        ("target", "10.0.0.5:80", "services.shop.target: 10.0.0.5 is not a loopback address"),
        ("extra", 1, "services.shop.extra: unknown field (allowed: name, vip, port"),
    ],
)
def test_invalid_field_is_rejected_with_its_path(path: str, value: object, expected: str) -> None:
    found = problems_of(with_(path, value))
    assert any(expected in p for p in found), found


def test_cookie_persistence_and_rules_need_l7() -> None:
    found = problems_of(with_("mode", "l4"))
    assert "services.shop.persistence: cookie persistence needs mode 'l7'" in found[0]
    assert any(p.startswith("services.shop.rules: rules need mode 'l7'") for p in found)


def test_every_problem_is_reported_at_once() -> None:
    doc = with_("port", 0)
    doc["vip"] = "nope"
    doc["policy"] = "x"
    assert len(problems_of(doc)) == 3


def test_missing_required_fields_and_non_mapping() -> None:
    assert problems_of({"name": "a"}) == ("services.a.vip: required", "services.a.port: required")
    assert problems_of(["not", "a", "mapping"])[0] == (
        "services: expected a mapping, got list ['not', 'a', 'mapping']"
    )


def test_file_with_two_services_on_one_vip_port_is_rejected() -> None:
    other = {"name": "web", "vip": "10.100.0.10", "port": 8080}
    with pytest.raises(ValidationError) as info:
        services_from_file_doc({"services": [L7, other]})
    assert info.value.problems == (
        "services.web.port: 10.100.0.10:8080 is already used by service 'shop'",
    )


def test_file_may_hold_one_service_a_list_or_a_services_key() -> None:
    other = {"name": "web", "vip": "10.100.0.10", "port": 80}
    assert [s.name for s in services_from_file_doc(L7)] == ["shop"]
    assert [s.name for s in services_from_file_doc([L7, other])] == ["shop", "web"]
    assert [s.name for s in services_from_file_doc({"services": [other]})] == ["web"]
    with pytest.raises(ValidationError, match="services.web: defined twice"):
        services_from_file_doc([other, dict(other, port=81)])


names = st.from_regex(r"[a-z][a-z0-9]{0,8}", fullmatch=True)
specs = st.builds(
    ServiceSpec,
    name=names,
    vip=st.tuples(*[st.integers(1, 223)] + [st.integers(0, 255)] * 2 + [st.integers(1, 254)])
    .filter(lambda t: t[0] not in (127, 169))
    .map(lambda t: ".".join(map(str, t))),
    port=st.integers(1, 65535),
    mode=st.just(Mode.L4),
    pool=st.one_of(
        st.just(Pool.everyone()),
        st.lists(names, min_size=1, max_size=4, unique=True).map(lambda n: Pool(nodes=tuple(n))),
    ),
    policy=st.sampled_from(list(Policy)),
    persistence=st.sampled_from(["none", "source-ip"]),
)


@given(specs)
def test_valid_specs_round_trip_through_documents_and_protobuf(spec: ServiceSpec) -> None:
    validate_service(spec)
    assert service_from_doc(service_to_doc(spec)) == spec
    assert (
        service_from_doc(service_to_doc(convert.service_from_pb(convert.service_to_pb(spec))))
        == spec
    )


def test_l7_spec_round_trips_through_protobuf() -> None:
    spec = service_from_doc(L7)
    back = convert.service_from_pb(convert.service_to_pb(spec))
    validate_service(back)
    assert service_from_doc(service_to_doc(back)) == spec


def test_every_enum_member_has_a_protobuf_value_and_back() -> None:
    from cluster.model import EventType, Role, Serving

    for table, back, enum in [
        (convert.ROLE_TO_PB, convert.ROLE_FROM_PB, Role),
        (convert.SERVING_TO_PB, convert.SERVING_FROM_PB, Serving),
        (convert.EVENT_TO_PB, convert.EVENT_FROM_PB, EventType),
    ]:
        assert set(table) == set(enum)
        assert {back[v] for v in table.values()} == set(enum)


def test_nodes_with_health_round_trip_through_protobuf() -> None:
    from cluster.model import Designation, LoadReport, Node, Registration, ServiceHealth

    report = LoadReport("n1", 0.5, 1.0, 0.2, 3, (ServiceHealth("web", True, 1.5, 3),), 0.5, 9.0)
    node = Node("n1", Designation("n1"), Registration("n1", "h:1", "h", 1, "v", 2.0), report)
    assert convert.node_from_pb(convert.node_to_pb(node)) == node
    assert convert.report_from_pb(convert.report_to_pb(report)) == report


def test_a_descriptor_path_must_be_normalized() -> None:
    doc = {**L7, "delivery": "descriptor", "target": "/run/tcphop/../../etc/x.sock"}
    found = problems_of(doc)
    assert any("is not a normalized absolute Unix socket path" in p for p in found), found
