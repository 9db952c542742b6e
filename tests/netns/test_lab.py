"""The connection hop end to end, in the lab `clusterctl lab up` builds.

Real etcd, real tcphopd with the XDP datapath on every node, nodes in two subnets behind a
router, the HTTP test service on the VIP, curl from the client namespace. The lab is shared by
the tests of this module, in order; each leaves it as it found it (n1 leading, all enabled).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cluster.model import Role, Serving
from lab import lifecycle as lab
from tests.conftest import clusterctl, wait_for
from tests.netns.conftest import running_lab, sdk

pytestmark = [pytest.mark.netns, pytest.mark.bpf, pytest.mark.e2e]
NODES = 4
MB = 2**20


def weights(state: lab.LabState) -> dict[str, int]:
    """The weights the leader's Maglev ring for `web` holds now."""
    return sdk(state, lambda c: c.datapath()).rings.get("web", {})  # type: ignore[no-any-return]


def leader(state: lab.LabState) -> str:
    st = sdk(state, lambda c: c.status())
    return st.leader.node_id if st.leader else ""


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[lab.LabState]:
    with running_lab(tmp_path_factory.mktemp("lab") / "lab", NODES) as loaded:
        sdk(loaded, lambda c: c.apply_service(lab.sample_service(loaded)))
        wait_for(lambda: len(weights(loaded)) == NODES, 20, "every server eligible")
        yield loaded


RUNNING: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _no_stray_downloads() -> Iterator[None]:
    yield
    while RUNNING:
        proc = RUNNING.pop()
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


class Download:
    """A curl download through the VIP, rate-limited so it spans what the test does."""

    def __init__(self, state: lab.LabState, size: int, rate: str, headers: Path) -> None:
        self.size, self.headers = size, headers
        net = state.lab
        self.proc = subprocess.Popen(
            net.exec(net.ns("c"), "curl", "-sS", "--limit-rate", rate, "-D", str(headers),
                     "-o", "/dev/null", "-w", "%{size_download}",
                     f"http://{state.vip}/bytes/{size}"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        RUNNING.append(self.proc)

    def server(self) -> str:
        text = self.headers.read_text(errors="replace") if self.headers.exists() else ""
        found = re.search(r"(?im)^x-served-by: (\S+)", text)
        return found.group(1) if found else ""

    def finish(self) -> int:
        out, err = self.proc.communicate(timeout=60)
        assert self.proc.returncode == 0, err
        return int(out)


def downloads(state: lab.LabState, tmp: Path, n: int, size: int, rate: str) -> list[Download]:
    started = [Download(state, size, rate, tmp / f"h{i}-{time.monotonic_ns()}") for i in range(n)]
    wait_for(lambda: all(d.server() for d in started), 10, "the downloads to start")
    return started


def test_connections_spread_over_both_subnets_and_replies_skip_the_scheduler(
    state: lab.LabState,
) -> None:
    served = Counter(lab.served_by(state, 200))
    assert set(served) == {f"n{i}" for i in range(1, NODES + 1)}, served
    assert min(served.values()) >= 20, served  # least-loaded weights are near equal when idle
    first = leader(state)
    i = int(first.removeprefix("n"))
    net = state.lab
    before_link = net.tx_bytes(net.port_to(i))
    before = sdk(state, lambda c: c.datapath(first)).stats
    done = lab.curl(
        state, "-o", "/dev/null", "-w", "%{size_download}", f"http://{state.vip}/bytes/{20 * MB}"
    )
    assert done.returncode == 0 and int(done.stdout) == 20 * MB, done.stderr
    after = sdk(state, lambda c: c.datapath(first)).stats
    to_scheduler = net.tx_bytes(net.port_to(i)) - before_link
    assert to_scheduler < 2 * MB  # the client's ACKs went there, not 20 MB of response
    assert after["vip_reply"] == before["vip_reply"]  # no reply ever reached the scheduler
    moved = after["encapsulated"] + after["local"] - before["encapsulated"] - before["local"]
    assert moved > 100  # the client's packets of the download were forwarded by the program


def test_a_50_mb_upload_and_download_through_the_vip_arrive_intact(
    state: lab.LabState, tmp_path: Path
) -> None:
    blob = tmp_path / "upload"
    data = os.urandom(50 * MB)
    blob.write_bytes(data)
    up = lab.curl(state, "-T", str(blob), f"http://{state.vip}/upload")
    assert up.returncode == 0, up.stderr
    assert up.stdout.strip() == hashlib.sha256(data).hexdigest()
    down = lab.curl(
        state, "-o", "/dev/null", "-w", "%{size_download}", f"http://{state.vip}/bytes/{50 * MB}"
    )
    assert down.returncode == 0 and int(down.stdout) == 50 * MB, down.stderr


def test_a_draining_server_gets_no_new_connections_while_open_ones_finish(
    state: lab.LabState, tmp_path: Path
) -> None:
    open_ = downloads(state, tmp_path, 6, 12 * MB, "3M")
    target = next(d.server() for d in open_ if d.server() != leader(state))
    sdk(state, lambda c: c.set_serving(target, Serving.DRAINING))
    try:
        wait_for(lambda: target not in weights(state), 10, f"{target} out of the rings")
        served = Counter(lab.served_by(state, 100))
        assert target not in served, served
        for d in open_:
            assert d.finish() == 12 * MB  # including the ones on the draining server
    finally:
        sdk(state, lambda c: c.set_serving(target, Serving.ENABLED))
    wait_for(lambda: target in weights(state), 10, f"{target} back in the rings")


def test_restarting_the_leaders_tcphopd_keeps_open_connections(
    state: lab.LabState, tmp_path: Path
) -> None:
    assert leader(state) == "n1"
    open_ = downloads(state, tmp_path, 6, 16 * MB, "2M")
    assert len({d.server() for d in open_}) >= 2
    state.nodes[0].stop()  # SIGTERM: n1 steps down, n2 takes over
    wait_for(lambda: leader(state) == "n2", 10, "n2 to lead")
    state.nodes[0] = lab.start_node(state, 1)
    state.save()
    wait_for(lambda: leader(state) == "n1", 20, "the restarted primary n1 to lead again")
    started = [
        json.loads(line)
        for line in (Path(state.directory) / "logs" / "n1.log").read_text().splitlines()
        if '"datapath_started"' in line
    ][-1]
    assert started["reused_maps"] and started["flows"] > 0  # the pinned flow table survived
    for d in open_:
        assert d.finish() == 16 * MB, f"the download from {d.server()} broke"
    served = Counter(lab.served_by(state, 40))
    assert len(served) >= 3, served


def test_a_planned_designation_change_moves_the_scheduler_and_keeps_connections(
    state: lab.LabState, tmp_path: Path
) -> None:
    assert leader(state) == "n1"
    open_ = downloads(state, tmp_path, 6, 10 * MB, "3M")
    before = sdk(state, lambda c: c.datapath("n2")).stats["encapsulated"]
    sdk(state, lambda c: c.designate("n2", Role.PRIMARY))
    try:
        wait_for(lambda: leader(state) == "n2", 10, "n2 to lead")

        def scheduling() -> bool:
            view = sdk(state, lambda c: c.datapath("n2"))
            return view.scheduling and state.vip in view.vips

        wait_for(scheduling, 5, "n2 to program its scheduler tables")
        served = Counter(lab.served_by(state, 40))
        assert len(served) >= 3, served
        for d in open_:
            assert d.finish() == 10 * MB, f"the download from {d.server()} broke"
        assert sdk(state, lambda c: c.datapath("n2")).stats["encapsulated"] > before
    finally:
        sdk(state, lambda c: c.designate("n1", Role.PRIMARY))
    wait_for(lambda: leader(state) == "n1", 15, "n1 to lead again")


def test_clusterctl_datapath_stats_and_flows(state: lab.LabState) -> None:
    env = {"TCPHOP_LAB_DIR": str(state.directory)}
    lab.served_by(state, 5)
    stats = clusterctl("datapath", "stats", env=env)
    assert stats.returncode == 0, stats.stderr
    assert "scheduler + receiver" in stats.stdout and "encapsulated" in stats.stdout
    flows = clusterctl("datapath", "flows", "-o", "json", env=env)
    assert flows.returncode == 0, flows.stderr
    assert any(f["client"] == state.lab.client_ip for f in json.loads(flows.stdout)["flows"])
    receiver = clusterctl("datapath", "stats", "n3", env=env)
    assert receiver.returncode == 0 and "receiver" in receiver.stdout
    unknown = clusterctl("datapath", "stats", "n9", env=env)
    assert unknown.returncode == 1 and "n9" in unknown.stderr


def test_designating_a_node_off_the_vips_segment_is_refused_and_the_vip_keeps_serving(
    state: lab.LabState,
) -> None:
    env = {"TCPHOP_LAB_DIR": str(state.directory)}
    refused = clusterctl("designate", "n3", "--role", "primary", env=env)
    assert refused.returncode == 1, refused.stderr
    assert f"n3 cannot announce {state.vip}" in refused.stderr
    nodes = {
        n["node_id"]: n
        for n in json.loads(clusterctl("nodes", "list", "-o", "json", env=env).stdout)
    }
    assert nodes["n3"]["designation"]["role"] == "none"
    assert leader(state) == "n1"
    assert len(Counter(lab.served_by(state, 20))) >= 3  # the VIP keeps serving


def scrape(state: lab.LabState, node: str) -> dict[str, float]:
    """A node's /metrics from the client namespace (HTTPS, the lab's CA), parsed by
    prometheus_client: sample name and sorted labels -> value."""
    ca = Path(state.directory) / "pki" / "ca.crt"
    address = next(p.http for p in state.nodes if p.name == node)
    got = lab.curl(state, "--cacert", str(ca), f"https://{address}/metrics")
    assert got.returncode == 0, got.stderr
    return {
        f"{s.name}{sorted(s.labels.items())}": s.value
        for family in text_string_to_metric_families(got.stdout)
        for s in family.samples
    }


def total(samples: dict[str, float], prefix: str, *parts: str) -> float:
    return sum(v for k, v in samples.items() if k.startswith(prefix) and all(p in k for p in parts))


def test_metrics_count_real_traffic_and_only_the_leader_answers_leader(
    state: lab.LabState,
) -> None:
    lead = leader(state)
    # A leader that took over in an earlier test hears every agent within a report or two.
    wait_for(lambda: total(scrape(state, lead), "tcphop_server_check_up", "'web'") == NODES, 10,
             "the leader to hear every agent")  # fmt: skip
    before = scrape(state, lead)
    served = Counter(lab.served_by(state, 40))
    after = scrape(state, lead)
    placed = "tcphop_service_connections_placed_total"
    for server, n in served.items():  # every new connection counted on the server it went to
        grew = total(after, placed, "'web'", f"'{server}'") - total(before, placed, f"'{server}'")
        assert grew >= n, (server, n, grew)
    assert total(after, "tcphop_datapath_packets_total", "'encapsulated'") > total(
        before, "tcphop_datapath_packets_total", "'encapsulated'"
    )
    assert total(after, "tcphop_datapath_flows") >= 1
    assert total(after, "tcphop_server_check_up", "'web'") == NODES  # the leader's view
    assert total(after, "tcphop_election_leader") == 1
    ca = Path(state.directory) / "pki" / "ca.crt"
    codes = {
        p.name: lab.curl(state, "--cacert", str(ca), "-o", "/dev/null", "-w", "%{http_code}",
                         f"https://{p.http}/leader").stdout
        for p in state.nodes
    }  # fmt: skip
    assert codes == {p.name: "200" if p.name == lead else "503" for p in state.nodes}


DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana" / "tcphop-overview.json"


def test_every_metric_the_grafana_dashboard_queries_exists_on_a_live_node(
    state: lab.LabState,
) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) >= 15 and all(
        t.get("refId") for p in dashboard["panels"] for t in p["targets"]
    )
    queried = {m for e in exprs for m in re.findall(r"\btcphop_[a-z0-9_]+", e)}
    ca = Path(state.directory) / "pki" / "ca.crt"
    address = next(p.http for p in state.nodes if p.name == leader(state))
    text = lab.curl(state, "--cacert", str(ca), f"https://{address}/metrics").stdout
    exposed = set(re.findall(r"(?m)^# TYPE (tcphop_\w+) ", text))
    exposed |= set(re.findall(r"(?m)^(tcphop_\w+)[{ ]", text))
    for family in [f for f in exposed if f in re.findall(r"(?m)^# TYPE (\w+) histogram", text)]:
        exposed |= {f"{family}_bucket", f"{family}_sum", f"{family}_count"}
    exposed |= {f"{f}_total" for f in re.findall(r"(?m)^# TYPE (\w+) counter", text)}
    assert queried <= exposed, sorted(queried - exposed)
