"""The demo's two services, the same in the namespace lab (lab/lifecycle.py) and the compose
demo (deploy/compose/demo.py): an L4 service on VIP:80 over every node, and an L7 one on
VIP:8080 with rules by path and header."""

from __future__ import annotations

from cluster.model import (
    CheckType,
    HeaderMatch,
    HealthCheck,
    Match,
    Mode,
    Policy,
    Pool,
    Rule,
    ServiceSpec,
)

SERVICE_PORT = 80  # the L4 service; the test service binds VIP:SERVICE_PORT on every node
APP_PORT = 8080  # the L7 service; its application listens on 127.0.0.1:APP_PORT on every node


def web(vip: str) -> ServiceSpec:
    """The L4 service: the test service on the VIP, on every node, least loaded first."""
    return ServiceSpec(
        name="web",
        vip=vip,
        port=SERVICE_PORT,
        mode=Mode.L4,
        pool=Pool.everyone(),
        policy=Policy.LEAST_LOADED,
        health_check=HealthCheck(type=CheckType.HTTP, path="/healthz", interval_s=1.0, rise=1),
    )


def shop(vip: str, nodes: int) -> ServiceSpec:
    """The L7 service on the VIP's port APP_PORT: /static -> n1, n2; X-Tenant: blue -> n3
    (with three nodes or more); otherwise round-robin over all; cookie `session` sticks; each
    connection is handed off to its node and spliced to the application on
    127.0.0.1:APP_PORT."""
    rules = [Rule("static", Match(path_prefix="/static"), Pool(("n1", "n2")[:nodes]))]
    if nodes >= 3:
        rules.append(
            Rule("blue", Match(header=HeaderMatch("X-Tenant", exact="blue")), Pool(("n3",)))
        )
    return ServiceSpec(
        name="shop",
        vip=vip,
        port=APP_PORT,
        mode=Mode.L7,
        pool=Pool.everyone(),
        policy=Policy.ROUND_ROBIN,
        persistence="cookie:session",
        health_check=HealthCheck(type=CheckType.TCP, interval_s=1.0, rise=1),
        rules=tuple(rules),
    )
