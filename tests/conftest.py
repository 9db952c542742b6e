"""Shared fixtures: a real etcd, unique key roots, real tcphopd processes, honest gating.

Capabilities are probed once. Locally a missing one skips with a reason; with CI=true or
TCPHOP_REQUIRE=etcd,root,... it fails the test instead, so CI cannot pass by skipping.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cluster.keys import Keys
from cluster.pki import certificate
from cluster.store.embedded import EmbeddedEtcd, etcd_binary, free_port
from cluster.store.etcd import EtcdStore
from cluster.tls import Access, TlsFiles
from datapath.libbpf import BpfError, BpfObject, build
from lab.netns import node_command

_PKI = Path(tempfile.mkdtemp(prefix="tcphop-test-pki-"))  # one CA for the whole session
atexit.register(shutil.rmtree, _PKI, ignore_errors=True)


def tls_for(name: str, access: Access | None = None) -> TlsFiles:
    """The session CA's certificate `name`: a node's (n1, n2, ...) unless `access` says."""
    role = access or (Access.NODE if name[:1] == "n" and name[1:].isdigit() else Access.ADMIN)
    node_id = name if role == Access.NODE else ""
    return certificate(_PKI, name, role, node_id, ("127.0.0.1",), "tcphop test CA")


def admin() -> TlsFiles:
    return tls_for("admin", Access.ADMIN)


TIMEOUT_MULTIPLIER = float(os.environ.get("TCPHOP_TIMEOUT_MULTIPLIER", "1"))


def _required() -> set[str]:
    listed = {c.strip() for c in os.environ.get("TCPHOP_REQUIRE", "").split(",") if c.strip()}
    in_ci = os.environ.get("CI") == "true"
    return listed | ({"etcd", "netns", "bpf", "docker"} if in_ci else set())


def need(capability: str, available: bool, why: str) -> None:
    """Skip (locally) or fail (in CI) when a capability is missing."""
    if available:
        return
    if capability in _required():
        pytest.fail(f"required capability {capability!r} is missing: {why}")
    pytest.skip(f"{capability} unavailable: {why}")


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> float:
    """Poll predicate until true; return the seconds it took. Fail after timeout_s."""
    start = time.monotonic()
    deadline = start + timeout_s * TIMEOUT_MULTIPLIER
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.02)
    return time.monotonic() - start


async def async_wait_for(predicate: Callable[[], object], timeout_s: float, what: str) -> float:
    start = time.monotonic()
    deadline = start + timeout_s * TIMEOUT_MULTIPLIER
    while not await predicate():  # type: ignore[misc]
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


def load_bpf() -> BpfObject:
    """Build and load datapath/bpf (root, clang and libbpf), or skip/fail as `need` says."""
    need(
        "bpf",
        os.geteuid() == 0 and shutil.which("clang") is not None,
        "needs root, clang and libbpf (apt-get install clang llvm libbpf-dev)",
    )
    try:
        return BpfObject(build())
    except BpfError as e:
        need("bpf", False, str(e))
        raise


@pytest.fixture(scope="session")
def etcd_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real etcd for the whole session (or TCPHOP_TEST_ETCD)."""
    if url := os.environ.get("TCPHOP_TEST_ETCD"):
        yield url
        return
    try:
        etcd_binary()
    except FileNotFoundError as e:
        need("etcd", False, str(e))
    server = EmbeddedEtcd(tmp_path_factory.mktemp("etcd"))
    server.start()
    yield server.url
    server.stop()


@pytest.fixture
def private_etcd(tmp_path: Path) -> Iterator[EmbeddedEtcd]:
    """An etcd of the test's own, for tests that stop or pause it."""
    try:
        etcd_binary()
    except FileNotFoundError as e:
        need("etcd", False, str(e))
    server = EmbeddedEtcd(tmp_path / "etcd")
    server.start()
    yield server
    if server.process is not None and server.process.poll() is None:
        server.process.send_signal(signal.SIGCONT)
    server.stop()


@pytest.fixture
def keys() -> Keys:
    """A key root of the test's own, so tests sharing one etcd never see each other."""
    return Keys(f"/t-{uuid.uuid4().hex[:10]}/tcphop/v1/")


@pytest.fixture
async def store(etcd_url: str) -> AsyncIterator[EtcdStore]:
    s = EtcdStore(etcd_url)
    yield s
    await s.close()


@dataclass
class Daemon:
    node_id: str
    endpoint: str
    process: subprocess.Popen[bytes]
    log: Path
    args: list[str] = field(default_factory=list)
    http: str = ""  # its metrics and health listener (HTTPS, the session CA)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def start_daemon(etcd_url: str, keys: Keys, tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    """Start real tcphopd processes (python -m cluster); each is killed at teardown."""
    started: list[Daemon] = []

    def start(
        node_id: str,
        etcd: str | None = None,
        lease_ttl_s: int = 2,
        wait: bool = True,
        leader_ttl_s: int = 1,
        check_host: str | None = None,
        http: str | None = None,
        extra: tuple[str, ...] = (),
    ) -> Daemon:
        endpoint, http = f"127.0.0.1:{free_port()}", http or f"127.0.0.1:{free_port()}"
        log = tmp_path / f"{node_id}-{len(started)}.log"
        args = node_command(
            node_id,
            etcd or etcd_url,
            endpoint,
            lease_ttl_s=lease_ttl_s,
            leader_ttl_s=leader_ttl_s,
            key_root=keys.root,
            check_host=check_host,
            tls=tls_for(node_id),
            http_listen=http,
        ) + list(extra)
        with log.open("wb") as out:
            # The daemon leads a process group (its CPU scope) in the test's session, so a test
            # can start a CPU burner in that group.
            proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, process_group=0)
        daemon = Daemon(node_id, endpoint, proc, log, args, http)
        started.append(daemon)
        if wait:
            wait_for(
                lambda: "daemon_started" in daemon.output() or proc.poll() is not None,
                15,
                f"{node_id} to start",
            )
            assert proc.poll() is None, daemon.output()
        return daemon

    yield start
    for d in started:
        if d.process.poll() is None:
            d.process.send_signal(signal.SIGCONT)
            d.process.kill()
            d.process.wait()


def clusterctl(
    *args: str,
    endpoint: str | None = None,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
    timeout_s: float = 60,
) -> subprocess.CompletedProcess[str]:
    full_env = dict(os.environ)
    for name in ("TCPHOP_ENDPOINT", "TCPHOP_TLS_CA", "TCPHOP_TLS_CERT", "TCPHOP_TLS_KEY"):
        full_env.pop(name, None)
    if endpoint:  # a cluster of the session CA (start_daemon): its admin certificate
        tls = admin()
        full_env |= {"TCPHOP_TLS_CA": str(tls.ca), "TCPHOP_TLS_CERT": str(tls.cert)}
        full_env["TCPHOP_TLS_KEY"] = str(tls.key)
    full_env |= env or {}
    if endpoint:
        full_env["TCPHOP_ENDPOINT"] = endpoint
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        capture_output=True,
        text=True,
        input=stdin,
        env=full_env,
        timeout=timeout_s,
    )


def pause(pid: int, timeout_s: float = 5.0) -> None:
    """SIGSTOP a process and return once every thread of it is stopped: the signal takes
    effect asynchronously, and a request sent meanwhile may still be served."""
    os.kill(pid, signal.SIGSTOP)

    def stopped() -> bool:
        tasks = Path(f"/proc/{pid}/task")
        states = [(t / "stat").read_text().rsplit(")", 1)[-1].split()[0] for t in tasks.iterdir()]
        return all(state in ("T", "t") for state in states)

    wait_for(stopped, timeout_s, f"process {pid} to stop")
