"""Client load for the chaos suite, run in the lab's client namespace: long rate-limited
downloads whose bytes are checked against the test service's (SHA-256), a stream of new
connections, and an L7 stream, all at once; one JSON document on stdout at the end.

    python -m lab.traffic --vip V [--l7-port P] --seconds S [--downloads N --size B --rate B/s]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import socket
import sys
import threading
import time
from typing import Any

from lab.testservice import CHUNK

PROBE_TIMEOUT_S = 0.5  # a new connection and its answer within this, or the probe failed


def expected_sha256(size: int) -> str:
    digest, left = hashlib.sha256(), size
    while left:
        n = min(left, len(CHUNK))
        digest.update(CHUNK[:n])
        left -= n
    return digest.hexdigest()


def _head(f: Any) -> dict[str, str]:
    status = f.readline()
    if not status.startswith(b"HTTP/1.1 200"):
        raise OSError(f"answer {status[:40]!r}")
    head = {}
    while line := f.readline().strip():
        k, _, v = line.decode().partition(":")
        head[k.lower()] = v.strip()
    return head


def download(vip: str, port: int, size: int, rate: float, out: dict[str, Any]) -> None:
    out.update(ok=False, bytes=0, server="", error="")
    digest, started = hashlib.sha256(), time.monotonic()
    try:
        with socket.create_connection((vip, port), timeout=10) as c, c.makefile("rb") as f:
            c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            c.sendall(b"GET /bytes/%d HTTP/1.1\r\nHost: lab\r\n\r\n" % size)
            out["server"] = _head(f).get("x-served-by", "")
            while out["bytes"] < size:
                chunk = f.read1(min(65536, size - out["bytes"]))
                if not chunk:
                    raise OSError("closed early")
                digest.update(chunk)
                out["bytes"] += len(chunk)
                ahead = out["bytes"] / rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
        out["ok"] = digest.hexdigest() == expected_sha256(size)
        if not out["ok"]:
            out["error"] = "SHA-256 mismatch"
    except OSError as e:
        out["error"] = f"{type(e).__name__}: {e}"


def probe(vip: str, port: int, until: float, every: float, path: bytes) -> list[list[Any]]:
    """A new connection every `every` seconds, each in a thread of its own (one that hangs
    does not delay the next): [start time, ok, served by or the error], in start order."""
    done: list[list[Any]] = []
    threads = []
    while (now := time.time()) < until:
        entry: list[Any] = [now, False, "running"]
        done.append(entry)
        threads.append(threading.Thread(target=_probe_once, args=(vip, port, path, entry)))
        threads[-1].start()
        time.sleep(max(0.0, every - (time.time() - now)))
    for t in threads:
        t.join()
    return done


def _probe_once(vip: str, port: int, path: bytes, entry: list[Any]) -> None:
    try:
        with socket.create_connection((vip, port), timeout=PROBE_TIMEOUT_S) as c:
            c.settimeout(PROBE_TIMEOUT_S)
            c.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n")
            with c.makefile("rb") as f:
                entry[1:] = [True, _head(f).get("x-served-by", "")]
    except OSError as e:
        entry[2] = type(e).__name__


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--vip", required=True)
    p.add_argument("--port", type=int, default=80)
    p.add_argument("--l7-port", type=int, default=0)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--downloads", type=int, default=3)
    p.add_argument("--size", type=int, default=8 << 20)
    p.add_argument("--rate", type=float, default=1 << 20)
    p.add_argument("--every", type=float, default=0.02)
    a = p.parse_args()
    until = time.time() + a.seconds
    results: dict[str, Any] = {"downloads": [{} for _ in range(a.downloads)]}
    threads = [
        threading.Thread(target=download, args=(a.vip, a.port, a.size, a.rate, out))
        for out in results["downloads"]
    ]
    threads.append(threading.Thread(target=lambda: results.update(
        probes=probe(a.vip, a.port, until, a.every, b"/"))))  # fmt: skip
    if a.l7_port:
        threads.append(threading.Thread(target=lambda: results.update(
            l7=probe(a.vip, a.l7_port, until, a.every * 2, b"/"))))  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sys.stdout.write(json.dumps(results) + "\n")


if __name__ == "__main__":
    main()
