"""Documents: the JSON-shaped form of tcphop's values, in YAML/JSON files and etcd values.

Readers check each field's type and name its path; `service_from_doc` then runs the one
validation (`cluster.validation`). Writers produce the canonical form that readers take back.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, fields, replace
from typing import Any, TypeVar

from cluster.errors import ValidationError
from cluster.model import (
    DEFAULT_WEIGHT,
    MAX_WEIGHT,
    CheckType,
    CookieMatch,
    Delivery,
    Designation,
    Handover,
    HeaderMatch,
    HealthCheck,
    LeaderRecord,
    LoadReport,
    Match,
    Mode,
    Policy,
    Pool,
    Registration,
    Role,
    Rule,
    ServiceHealth,
    ServiceSpec,
    Serving,
    VipOwner,
)
from cluster.validation import endpoint_problems, validate_service


class _Doc:
    """Reads one mapping of a document, recording problems with their field paths."""

    def __init__(self, data: object, at: str, problems: list[str]) -> None:
        self.at, self.problems = at, problems
        if isinstance(data, Mapping):
            self.data: Mapping[str, object] = data
        else:
            problems.append(f"{at}: expected a mapping, got {_kind(data)}")
            self.data = {}

    def only(self, *allowed: str) -> None:
        for key in self.data:
            if key not in allowed:
                self.problems.append(
                    f"{self.at}.{key}: unknown field (allowed: {', '.join(allowed)})"
                )

    def get(self, key: str, kind: type[_T], default: _T) -> _T:
        value = self.data.get(key, default)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            self.problems.append(f"{self.at}.{key}: expected {kind.__name__}, got {_kind(value)}")
            return default
        return value

    def sub(self, key: str) -> _Doc | None:
        return _Doc(self.data[key], f"{self.at}.{key}", self.problems) if key in self.data else None


_T = TypeVar("_T")


def _kind(value: object) -> str:
    return "nothing" if value is None else f"{type(value).__name__} {value!r}"


def _pool_from(value: object, at: str, problems: list[str]) -> Pool:
    if value == "all":
        return Pool.everyone()
    if isinstance(value, list) and all(isinstance(n, str) for n in value):
        return Pool(nodes=tuple(value))
    problems.append(f"{at}: expected 'all' or a list of node ids, got {_kind(value)}")
    return Pool.everyone()


def _check_from(doc: _Doc | None) -> HealthCheck:
    d = HealthCheck()
    if doc is None:
        return d
    doc.only("type", "port", "path", "interval_s", "timeout_s", "rise", "fall", "expect_status")
    return HealthCheck(
        type=doc.get("type", str, str(d.type)),  # type: ignore[arg-type]  # checked later
        port=doc.get("port", int, d.port),
        path=doc.get("path", str, d.path),
        interval_s=doc.get("interval_s", float, d.interval_s),
        timeout_s=doc.get("timeout_s", float, d.timeout_s),
        rise=doc.get("rise", int, d.rise),
        fall=doc.get("fall", int, d.fall),
        expect_status=doc.get("expect_status", int, d.expect_status),
    )


def _match_from(doc: _Doc | None) -> Match:
    if doc is None:
        return Match()
    doc.only("path_prefix", "path_regex", "host", "header", "cookie")
    header = cookie = None
    if (h := doc.sub("header")) is not None:
        h.only("name", "exact", "regex")
        header = HeaderMatch(
            h.get("name", str, ""), h.get("exact", str, ""), h.get("regex", str, "")
        )
    if (c := doc.sub("cookie")) is not None:
        c.only("name", "value")
        cookie = CookieMatch(c.get("name", str, ""), c.get("value", str, ""))
    return Match(
        doc.get("path_prefix", str, ""),
        doc.get("path_regex", str, ""),
        doc.get("host", str, ""),
        header,
        cookie,
    )


def _rule_from(data: object, at: str, problems: list[str]) -> Rule:
    doc = _Doc(data, at, problems)
    doc.only("name", "match", "pool", "policy")
    policy = doc.get("policy", str, "")
    return Rule(
        name=doc.get("name", str, ""),
        match=_match_from(doc.sub("match")),
        pool=_pool_from(doc.data.get("pool"), f"{at}.pool", problems),
        policy=policy or None,  # type: ignore[arg-type]  # checked by validate_service
    )


def service_from_doc(data: object, where: str = "services") -> ServiceSpec:
    """Build and validate a ServiceSpec from a YAML/JSON document; raise ValidationError."""
    problems: list[str] = []
    name = data.get("name") if isinstance(data, Mapping) else None
    at = f"{where}.{name}" if isinstance(name, str) and name else where
    doc = _Doc(data, at, problems)
    doc.only(
        "name",
        "vip",
        "port",
        "protocol",
        "mode",
        "pool",
        "policy",
        "persistence",
        "health_check",
        "rules",
        "delivery",
        "target",
    )
    for required in ("name", "vip", "port"):
        if required not in doc.data and isinstance(data, Mapping):
            problems.append(f"{at}.{required}: required")
    raw_rules = doc.data.get("rules", [])
    if not isinstance(raw_rules, list):
        problems.append(f"{at}.rules: expected a list, got {_kind(raw_rules)}")
        raw_rules = []
    d = ServiceSpec(name="", vip="", port=0)
    spec = ServiceSpec(
        name=doc.get("name", str, ""),
        vip=doc.get("vip", str, ""),
        port=doc.get("port", int, 0),
        protocol=doc.get("protocol", str, d.protocol),
        mode=doc.get("mode", str, str(d.mode)),  # type: ignore[arg-type]  # checked below
        pool=_pool_from(doc.data.get("pool", "all"), f"{at}.pool", problems),
        policy=doc.get("policy", str, str(d.policy)),  # type: ignore[arg-type]
        persistence=doc.get("persistence", str, d.persistence),
        health_check=_check_from(doc.sub("health_check")),
        rules=tuple(_rule_from(r, f"{at}.rules[{i}]", problems) for i, r in enumerate(raw_rules)),
        delivery=doc.get("delivery", str, str(d.delivery)),  # type: ignore[arg-type]
        target=doc.get("target", str, d.target),
    )
    if problems:
        raise ValidationError(problems)
    validate_service(spec, at)
    return normalize_service(spec)


def normalize_service(spec: ServiceSpec) -> ServiceSpec:
    """Turn validated strings into enum members so that equal specs compare equal."""

    return replace(
        spec,
        mode=Mode(spec.mode),
        policy=Policy(spec.policy),
        delivery=Delivery(spec.delivery),
        health_check=replace(spec.health_check, type=CheckType(spec.health_check.type)),
        rules=tuple(replace(r, policy=Policy(r.policy) if r.policy else None) for r in spec.rules),
    )


def service_to_doc(spec: ServiceSpec) -> dict[str, object]:
    """The canonical document form of a spec (the inverse of service_from_doc)."""
    hc = spec.health_check
    return {
        "name": spec.name,
        "vip": spec.vip,
        "port": spec.port,
        "protocol": spec.protocol,
        "mode": str(spec.mode),
        "pool": _pool_to_doc(spec.pool),
        "policy": str(spec.policy),
        "persistence": spec.persistence,
        "health_check": {
            "type": str(hc.type),
            "port": hc.port,
            "path": hc.path,
            "interval_s": hc.interval_s,
            "timeout_s": hc.timeout_s,
            "rise": hc.rise,
            "fall": hc.fall,
            "expect_status": hc.expect_status,
        },
        "rules": [_rule_to_doc(r) for r in spec.rules],
        "delivery": str(spec.delivery),
        "target": spec.target,
    }


def _pool_to_doc(pool: Pool) -> str | list[str]:
    return "all" if pool.all else list(pool.nodes)


def _rule_to_doc(rule: Rule) -> dict[str, object]:
    m = rule.match
    match: dict[str, object] = {
        k: v
        for k, v in (("path_prefix", m.path_prefix), ("path_regex", m.path_regex), ("host", m.host))
        if v
    }
    if m.header is not None:
        match["header"] = {
            k: v
            for k, v in (
                ("name", m.header.name),
                ("exact", m.header.exact),
                ("regex", m.header.regex),
            )
            if v
        }
    if m.cookie is not None:
        match["cookie"] = {"name": m.cookie.name, "value": m.cookie.value}
    doc: dict[str, object] = {"name": rule.name, "match": match, "pool": _pool_to_doc(rule.pool)}
    if rule.policy is not None:
        doc["policy"] = str(rule.policy)
    return doc


def services_from_file_doc(data: object) -> list[ServiceSpec]:
    """Accept one service, a list of services, or {services: [...]}; validate them all."""
    if isinstance(data, Mapping) and set(data) == {"services"}:
        data = data["services"]
    items = data if isinstance(data, list) else [data]
    specs: list[ServiceSpec] = []
    problems: list[str] = []
    for i, item in enumerate(items):
        named = isinstance(item, Mapping) and isinstance(item.get("name"), str) and item["name"]
        try:
            specs.append(
                service_from_doc(item, "services" if named or len(items) == 1 else f"services[{i}]")
            )
        except ValidationError as e:
            problems += e.problems
    for i, spec in enumerate(specs):
        problems += endpoint_problems(spec, specs[:i])
    names = [s.name for s in specs]
    problems += [
        f"services.{n}: defined twice in the file" for n in sorted(set(names)) if names.count(n) > 1
    ]
    if problems:
        raise ValidationError(problems)
    return specs


def designation_to_doc(d: Designation) -> dict[str, object]:
    return {"role": str(d.role), "serving": str(d.serving), "weight": d.weight}


def designation_from_doc(node_id: str, data: Mapping[str, object]) -> Designation:
    weight = data.get("weight", DEFAULT_WEIGHT)
    if not isinstance(weight, int) or isinstance(weight, bool) or not 0 <= weight <= MAX_WEIGHT:
        raise ValueError(f"weight: {weight!r} is not in 0..{MAX_WEIGHT}")
    return Designation(
        node_id,
        Role(str(data.get("role", "none"))),
        Serving(str(data.get("serving", "enabled"))),
        weight,
    )


_R = TypeVar("_R", Registration, LeaderRecord, Handover, VipOwner, LoadReport, ServiceHealth)


def record_to_doc(record: Registration | LeaderRecord | Handover | VipOwner) -> dict[str, object]:
    return asdict(record)


def record_from_doc(cls: type[_R], data: Mapping[str, object]) -> _R:
    """A flat record written by tcphop; unknown fields (from newer versions) are ignored."""
    types = {f.name: str(f.type) for f in fields(cls)}
    known: dict[str, Any] = {k: v for k, v in data.items() if k in types}
    for name, value in known.items():
        if types[name] == "tuple[str, ...]":  # a JSON list of strings
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"{name}: expected a list of strings, got {_kind(value)}")
            known[name] = tuple(value)
            continue
        want = _SCALARS.get(types[name])
        if want is not None and (not isinstance(value, want) or _wrong_bool(value, want)):
            raise ValueError(f"{name}: expected {types[name]}, got {_kind(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{name}: {value} is not a finite number")
    return cls(**known)


_SCALARS: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
}


def _wrong_bool(value: object, want: tuple[type, ...]) -> bool:
    return isinstance(value, bool) and bool not in want


def report_to_doc(r: LoadReport) -> dict[str, object]:
    return asdict(r)


def report_from_doc(data: Mapping[str, object]) -> LoadReport:
    services = data.get("services", [])
    if not isinstance(services, list):
        raise ValueError("services must be a list")
    doc = {k: v for k, v in data.items() if k != "services"}
    return replace(
        record_from_doc(LoadReport, doc),
        services=tuple(
            record_from_doc(ServiceHealth, s) for s in services if isinstance(s, Mapping)
        ),
    )
