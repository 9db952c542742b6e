"""The interpreter's floor for an L7 front: the least a Python process can do per new connection,
against HAProxy doing the whole proxy job, on this machine and in the same run.

    sudo .venv/bin/python bench/floor.py [--seconds 8] [--conns 16]
    (needs wrk and haproxy; `./run.sh bench --floor`)

Everything runs in one private network namespace, on its loopback: the lab's HTTP test service
(lab/testservice.py) as the application, and in front of it, one at a time:

- `HAProxy mode http`: reads the request, opens a connection to the application, relays;
- `python proxy`: the same job as little Python can do it (asyncio protocols: accept, read the
  head to its blank line, connect to the application, relay both ways, close): what an L7 front
  written in Python costs when it touches every connection once, as tcphop's adopting node does;
- `python answer`: accept, read the head, answer a fixed 200 and close, no upstream at all: less
  than any L7 front does (tcphop's scheduler does more per connection: it also freezes the
  socket and sends two handoff frames);

wrk opens a new connection per request (`Connection: close`), `--conns` at a time. The table
gives requests/s, client p50 / p99, the front's CPU per connection (its /proc CPU time over the
run / requests) and both against HAProxy's. On a machine whose cores are all busy (client, front
and application share them), the rate follows the total CPU per connection.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from measure import WrkResult, parse_wrk, proc_cpu_s

ROOT = Path(__file__).resolve().parent.parent
APP_PORT, FRONT_PORT = 9080, 9081
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n"
HAPROXY_CFG = """global
    maxconn 4000
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout http-request 5s
frontend front
    bind 127.0.0.1:{front}
    default_backend app
backend app
    server app 127.0.0.1:{app}
"""


class _Upstream(asyncio.Protocol):
    def __init__(self, client: asyncio.Transport) -> None:
        self.client = client

    def data_received(self, data: bytes) -> None:
        self.client.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.close()


class _Front(asyncio.Protocol):
    """One client connection: the head, then (proxy) an upstream relay or (answer) a 200."""

    def __init__(self, upstream: tuple[str, int] | None) -> None:
        self.upstream_address = upstream
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.upstream: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        if self.upstream is not None:
            self.upstream.write(data)
            return
        self.buf += data
        if b"\r\n\r\n" not in self.buf:
            return
        if self.upstream_address is None:
            self.transport.write(ANSWER)
            self.transport.close()
            return
        self.transport.pause_reading()
        asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        assert self.transport is not None
        assert self.upstream_address is not None
        loop = asyncio.get_running_loop()
        client = self.transport
        try:
            upstream, _ = await loop.create_connection(
                lambda: _Upstream(client), *self.upstream_address
            )
        except OSError:
            client.close()
            return
        self.upstream = upstream
        upstream.write(self.buf)
        client.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.upstream is not None:
            self.upstream.close()


def serve(mode: str) -> None:
    """A minimal Python front on FRONT_PORT: `proxy` to the application, or `answer`."""

    async def main() -> None:
        upstream = ("127.0.0.1", APP_PORT) if mode == "proxy" else None
        server = await asyncio.get_running_loop().create_server(
            lambda: _Front(upstream), "127.0.0.1", FRONT_PORT, backlog=1024, reuse_address=True
        )
        await server.serve_forever()

    asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--conns", type=int, default=16)
    parser.add_argument("--serve", choices=("proxy", "answer"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    missing = [t for t in ("wrk", "haproxy") if not shutil.which(t)]
    if missing:
        sys.exit(f"missing {', '.join(missing)}: apt-get install wrk haproxy")
    ns = f"thfl{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        with tempfile.TemporaryDirectory(prefix="th-floor-") as tmp:
            report(measure_all(ns, Path(tmp), args), args)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def _in(ns: str, *cmd: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *cmd]


def _spawn(ns: str, *cmd: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(_in(ns, *cmd), cwd=ROOT, stdout=subprocess.DEVNULL)
    time.sleep(1.0)  # listening (a refused warm-up says otherwise)
    if proc.poll() is not None:
        sys.exit(f"{' '.join(cmd)} exited with {proc.returncode}")
    return proc


def measure_all(ns: str, tmp: Path, args: argparse.Namespace) -> list[tuple[str, WrkResult, float]]:
    """(row, wrk's figures, the front's CPU ms per connection) per front."""
    app = _spawn(ns, sys.executable, "-m", "lab.testservice", "--bind",
                 f"127.0.0.1:{APP_PORT}", "--name", "app")  # fmt: skip
    cfg = tmp / "haproxy.cfg"
    cfg.write_text(HAPROXY_CFG.format(front=FRONT_PORT, app=APP_PORT))
    me = [sys.executable, str(Path(__file__).resolve())]
    fronts: list[tuple[str, Callable[[], subprocess.Popen[bytes]]]] = [
        ("HAProxy mode http", lambda: _spawn(ns, "haproxy", "-db", "-f", str(cfg))),
        ("python proxy", lambda: _spawn(ns, *me, "--serve", "proxy")),
        ("python answer", lambda: _spawn(ns, *me, "--serve", "answer")),
    ]
    rows = []
    try:
        url = f"http://127.0.0.1:{APP_PORT}/"
        _wrk(ns, url, 2, args.conns)  # warm-up
        direct = _wrk(ns, url, args.seconds, args.conns)
        rows.append(("direct (the application alone)", direct, 0.0))
        for name, start in fronts:
            front = start()
            try:
                url = f"http://127.0.0.1:{FRONT_PORT}/"
                _wrk(ns, url, 2, args.conns)
                cpu0 = proc_cpu_s(front.pid)
                result = _wrk(ns, url, args.seconds, args.conns)
                cpu = proc_cpu_s(front.pid) - cpu0
                rows.append((name, result, 1000 * cpu / (result.requests_s * args.seconds)))
            finally:
                front.terminate()
                front.wait()
    finally:
        app.terminate()
        app.wait()
    return rows


def _wrk(ns: str, url: str, seconds: int, conns: int) -> WrkResult:
    cmd = ["wrk", "-t2", f"-c{conns}", f"-d{seconds}s", "--latency",
           "-H", "Connection: close", url]  # fmt: skip
    out = subprocess.run(_in(ns, *cmd), capture_output=True, text=True, check=True).stdout
    result = parse_wrk(out, url)
    if result.errors:
        sys.exit(f"wrk {url}: {result.errors} errors:\n{out}\n{cmd}")
    return result


def report(rows: list[tuple[str, WrkResult, float]], args: argparse.Namespace) -> None:
    cores = os.cpu_count()
    print(f"# L7 front floor, {time.strftime('%Y-%m-%d')}, {cores} CPUs, loopback, "
          f"wrk -t2 -c{args.conns} -d{args.seconds}s, a new connection per request\n")  # fmt: skip
    print("| front | req/s | p50 ms | p99 ms | front CPU ms / conn | req/s vs HAProxy "
          "| CPU / conn vs HAProxy |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|")
    haproxy = next(r for r in rows if r[0].startswith("HAProxy"))
    for name, r, cpu in rows:
        cpu_ratio = f"{cpu / haproxy[2]:.2f}" if cpu else ""
        rate = r.requests_s / haproxy[1].requests_s
        print(f"| {name} | {r.requests_s:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | "
              f"{cpu:.3f} | {rate:.2f} | {cpu_ratio} |")  # fmt: skip


if __name__ == "__main__":
    main()
