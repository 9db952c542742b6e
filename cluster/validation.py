"""Validation of tcphop's inputs, in one place.

Every check names the field path and the reason (`services.web.port: 70000 is not in
1..65535`) and raises one ValidationError listing every problem; nothing is stored when any
part is invalid. Used by the server for API calls and by the document readers for files.
"""

from __future__ import annotations

import ipaddress
import posixpath
from collections.abc import Sequence
from enum import StrEnum
from typing import TypeVar

from cluster.errors import ValidationError
from cluster.limits import (
    MAX_CONNECTIONS,
    MAX_PATTERN_BYTES,
    MAX_REPORT_INTERVAL_S,
    MAX_REPORT_SERVICES,
    MAX_RULES,
    MIN_REPORT_INTERVAL_S,
)
from cluster.model import (
    HEADER_NAME_RE,
    MAX_WEIGHT,
    NAME_RE,
    CheckType,
    Delivery,
    HealthCheck,
    LoadReport,
    Mode,
    Policy,
    Pool,
    Rule,
    ServiceSpec,
)
from cluster.pattern import compile_pattern


def validate_node_id(node_id: str, where: str = "node_id") -> None:
    if not NAME_RE.match(node_id):
        raise ValidationError([f"{where}: {node_id!r} {_NAME_RULE}"])


def validate_weight(weight: int, where: str = "weight") -> None:
    if not 0 <= weight <= MAX_WEIGHT:
        raise ValidationError([f"{where}: {weight} is not in 0..{MAX_WEIGHT}"])


_NAME_RULE = "is not a valid name (1-63 of a-z, 0-9, '.', '_', '-'; alphanumeric at both ends)"


def validate_service(spec: ServiceSpec, where: str | None = None) -> None:
    """Check every semantic rule of a ServiceSpec; raise one ValidationError listing all."""
    at = where or f"services.{spec.name or '?'}"
    problems: list[str] = []
    if not NAME_RE.match(spec.name):
        problems.append(f"{at}.name: {spec.name!r} {_NAME_RULE}")
    problems += _vip_problems(spec.vip, f"{at}.vip")
    if not 1 <= spec.port <= 65535:
        problems.append(f"{at}.port: {spec.port} is not in 1..65535")
    if spec.protocol != "tcp":
        problems.append(f"{at}.protocol: {spec.protocol!r} is not supported (only 'tcp')")
    problems += _enum_problem(spec.mode, Mode, f"{at}.mode")
    problems += _enum_problem(spec.policy, Policy, f"{at}.policy")
    problems += _pool_problems(spec.pool, f"{at}.pool")
    problems += _persistence_problems(spec, f"{at}.persistence")
    problems += _check_problems(spec.health_check, f"{at}.health_check")
    problems += _delivery_problems(spec, at)
    if spec.rules and spec.mode != Mode.L7:
        problems.append(f"{at}.rules: rules need mode 'l7' (mode is {str(spec.mode)!r})")
    if len(spec.rules) > MAX_RULES:
        problems.append(f"{at}.rules: {len(spec.rules)} rules, more than {MAX_RULES}")
    seen: set[str] = set()
    for i, rule in enumerate(spec.rules[:MAX_RULES]):
        rat = f"{at}.rules[{i}]"
        if rule.name in seen:
            problems.append(f"{rat}.name: {rule.name!r} is used by an earlier rule")
        seen.add(rule.name)
        problems += _rule_problems(rule, rat)
        problems += _rule_pool_problems(rule.pool, spec.pool, f"{rat}.pool")
    if problems:
        raise ValidationError(problems)


def endpoint_problems(spec: ServiceSpec, others: Sequence[ServiceSpec]) -> list[str]:
    """A VIP:port serves one service; several services may share a VIP on other ports."""
    return [
        f"services.{spec.name}.port: {spec.vip}:{spec.port} is already used by service "
        f"{other.name!r}"
        for other in others
        if other.name != spec.name and (other.vip, other.port) == (spec.vip, spec.port)
    ]


def _vip_problems(vip: str, at: str) -> list[str]:
    try:
        addr = ipaddress.IPv4Address(vip)
    except ValueError:
        return [f"{at}: {vip!r} is not an IPv4 address"]
    if addr.is_unspecified or addr.is_loopback or addr.is_multicast or addr.is_link_local:
        return [f"{at}: {vip} cannot be a VIP (unspecified, loopback, multicast or link-local)"]
    if addr == ipaddress.IPv4Address("255.255.255.255"):
        return [f"{at}: {vip} is the broadcast address"]
    return []


_E = TypeVar("_E", bound=StrEnum)


def validate_enum(value: object, enum: type[StrEnum], where: str) -> None:
    """One of the enum's values, or ValidationError naming the allowed ones."""
    problems = _enum_problem(value, enum, where)
    if problems:
        raise ValidationError(problems)


def _enum_problem(value: object, enum: type[_E], at: str) -> list[str]:
    if value in enum.__members__.values():
        return []
    allowed = ", ".join(repr(str(m)) for m in enum)
    return [f"{at}: {value!r} is not one of {allowed}"]


def _pool_problems(pool: Pool, at: str) -> list[str]:
    if pool.all:
        return [f"{at}: 'all' cannot be combined with node ids"] if pool.nodes else []
    if not pool.nodes:
        return [f"{at}: must be 'all' or a non-empty list of node ids"]
    problems = [
        f"{at}[{i}]: {n!r} {_NAME_RULE}" for i, n in enumerate(pool.nodes) if not NAME_RE.match(n)
    ]
    dupes = sorted({n for n in pool.nodes if pool.nodes.count(n) > 1})
    if dupes:
        problems.append(f"{at}: node ids listed twice: {', '.join(dupes)}")
    return problems


def _delivery_problems(spec: ServiceSpec, at: str) -> list[str]:
    problems = _enum_problem(spec.delivery, Delivery, f"{at}.delivery")
    if problems:
        return problems
    if spec.mode != Mode.L7 and (spec.delivery != Delivery.SPLICE or spec.target):
        return [
            f"{at}.delivery: delivery and target need mode 'l7' (l4 connections are not handed off)"
        ]
    if not spec.target:
        return []
    if spec.delivery == Delivery.DESCRIPTOR:
        target = spec.target
        if (
            not target.startswith("/")
            or len(target.encode()) > 107
            or posixpath.normpath(target) != target
        ):
            return [
                f"{at}.target: {target!r} is not a normalized absolute Unix socket path "
                "(<= 107 bytes, no '..', '.' or '//'); each node accepts only paths under its "
                "--descriptor-dir"
            ]
        return []
    host, sep, port = spec.target.rpartition(":")
    if not sep or not port.isdigit() or not 1 <= int(port) <= 65535:
        return [f"{at}.target: {spec.target!r} is not of the form HOST:PORT"]
    try:
        addr = ipaddress.IPv4Address(host)
    except ValueError:
        return [f"{at}.target: {host!r} is not an IPv4 address"]
    if not addr.is_loopback:
        return [
            f"{at}.target: {host} is not a loopback address: a handed-off connection is delivered "
            "to an application on the node that adopts it (use 127.0.0.1:PORT)"
        ]
    return []


def _persistence_problems(spec: ServiceSpec, at: str) -> list[str]:
    value = spec.persistence
    if value in ("none", "source-ip"):
        return []
    kind, sep, cookie = value.partition(":")
    if kind != "cookie" or not sep:
        return [f"{at}: {value!r} is not one of 'none', 'source-ip', 'cookie:<name>'"]
    if not HEADER_NAME_RE.match(cookie):
        return [f"{at}: {cookie!r} is not a valid cookie name"]
    if spec.mode != Mode.L7:
        return [f"{at}: cookie persistence needs mode 'l7' (an l4 service cannot read cookies)"]
    return []


def _check_problems(hc: HealthCheck, at: str) -> list[str]:
    problems = _enum_problem(hc.type, CheckType, f"{at}.type")
    if not 0 <= hc.port <= 65535:
        problems.append(f"{at}.port: {hc.port} is not in 0..65535 (0: the service port)")
    if not 0 < hc.interval_s <= 3600:
        problems.append(f"{at}.interval_s: {hc.interval_s} is not in (0, 3600]")
    if not 0 < hc.timeout_s <= hc.interval_s:
        problems.append(f"{at}.timeout_s: {hc.timeout_s} must be > 0 and <= interval_s")
    for name in ("rise", "fall"):
        value = getattr(hc, name)
        if not 1 <= value <= 100:
            problems.append(f"{at}.{name}: {value} is not in 1..100")
    if hc.type == CheckType.HTTP:
        if not hc.path.startswith("/"):
            problems.append(f"{at}.path: {hc.path!r} must start with '/'")
        if not 100 <= hc.expect_status <= 599:
            problems.append(f"{at}.expect_status: {hc.expect_status} is not in 100..599")
    return problems


def _rule_problems(rule: Rule, at: str) -> list[str]:
    problems = [] if NAME_RE.match(rule.name) else [f"{at}.name: {rule.name!r} {_NAME_RULE}"]
    m = rule.match
    if not (m.path_prefix or m.path_regex or m.host or m.header or m.cookie):
        problems.append(
            f"{at}.match: needs at least one of path_prefix, path_regex, host, header, cookie"
        )
    if m.path_prefix and not m.path_prefix.startswith("/"):
        problems.append(f"{at}.match.path_prefix: {m.path_prefix!r} must start with '/'")
    problems += _regex_problems(m.path_regex, f"{at}.match.path_regex")
    if m.header is not None:
        h = m.header
        if not HEADER_NAME_RE.match(h.name):
            problems.append(f"{at}.match.header.name: {h.name!r} is not a valid header name")
        if bool(h.exact) == bool(h.regex):
            problems.append(f"{at}.match.header: give exactly one of exact, regex")
        problems += _regex_problems(h.regex, f"{at}.match.header.regex")
    if m.cookie is not None and not HEADER_NAME_RE.match(m.cookie.name):
        problems.append(f"{at}.match.cookie.name: {m.cookie.name!r} is not a valid cookie name")
    problems += _pool_problems(rule.pool, f"{at}.pool")
    if rule.policy is not None:
        problems += _enum_problem(rule.policy, Policy, f"{at}.policy")
    return problems


def _rule_pool_problems(pool: Pool, service_pool: Pool, at: str) -> list[str]:
    """A rule's servers must be among the service's: only those check the service, so any
    other node is never eligible and the rule would answer 503 for ever."""
    if service_pool.all:
        return []
    if pool.all:
        return [f"{at}: 'all' is wider than the service's pool; list nodes of the service's pool"]
    return [
        f"{at}[{i}]: {n!r} is not in the service's pool (add it there, or pick one of "
        f"{', '.join(service_pool.nodes)})"
        for i, n in enumerate(pool.nodes)
        if n not in service_pool.nodes
    ]


def _regex_problems(pattern: str, at: str) -> list[str]:
    if not pattern:
        return []
    if len(pattern.encode()) > MAX_PATTERN_BYTES:
        return [
            f"{at}: the pattern has {len(pattern.encode())} bytes, more than {MAX_PATTERN_BYTES}"
        ]
    try:
        compile_pattern(pattern)
    except ValueError as e:
        return [f"{at}: {pattern[:80]!r} is not a valid RE2 regular expression ({e})"]
    return []


def report_problems(r: LoadReport) -> list[str]:
    """What is wrong with an agent's load report (streamed or stored); [] when it is sound."""
    problems = [] if NAME_RE.match(r.node_id) else [f"node_id: {r.node_id!r} {_NAME_RULE}"]
    for name, value, low, high in (
        ("cpu", r.cpu, 0.0, 1.0),
        ("memory_used", r.memory_used, 0.0, 1.0),
        ("load1", r.load1, 0.0, 1e6),
        ("interval_s", r.interval_s, MIN_REPORT_INTERVAL_S, MAX_REPORT_INTERVAL_S),
        ("connections", r.connections, 0, MAX_CONNECTIONS),
    ):
        if not low <= value <= high:  # NaN fails too
            problems.append(f"{name}: {value} is not in {low}..{high}")
    if len(r.services) > MAX_REPORT_SERVICES:
        problems.append(f"services: {len(r.services)} entries, more than {MAX_REPORT_SERVICES}")
    for i, s in enumerate(r.services[:MAX_REPORT_SERVICES]):
        if not NAME_RE.match(s.service):
            problems.append(f"services[{i}].service: {s.service!r} {_NAME_RULE}")
        if not 0 <= s.latency_ms <= 3_600_000 or not 0 <= s.connections <= MAX_CONNECTIONS:
            problems.append(f"services[{i}]: latency_ms or connections out of range")
        if len(s.error) > 1024:
            problems.append(f"services[{i}].error: longer than 1024 characters")
    return problems


def announce_problems(prefixes: object, where: str = "announces") -> list[str]:
    """What is wrong with a list of IPv4 prefixes a node can announce; [] when sound."""
    if not isinstance(prefixes, list | tuple) or not 1 <= len(prefixes) <= 64:
        return [f"{where}: give 1 to 64 IPv4 prefixes"]
    problems = []
    for p in prefixes:
        try:
            ipaddress.IPv4Network(p, strict=False)
        except (ValueError, TypeError):
            problems.append(f"{where}: {p!r} is not an IPv4 prefix (like 10.0.0.0/24)")
    return problems
