"""Idle CPU of one tcphopd, with its metrics and health listener off and on.

    .venv/bin/python bench/idle.py [--seconds 60] [--scrape-every 5]

Starts a private etcd and one tcphopd (no datapath, plaintext: the cost measured is the
daemon's, not TLS's) with --http-listen off, then again with it on and /metrics plus /healthz
scraped every --scrape-every seconds (Prometheus scrapes every 15 s by default), and reads the
daemon's CPU time from /proc over --seconds after a warm-up. Prints one table; the README keeps
the latest.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from cluster.store.embedded import EmbeddedEtcd, free_port
from lab.netns import node_command

WARMUP_S = 5.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def measure(etcd_url: str, logs: Path, http: str, seconds: float, every: float) -> float:
    """Share of one core the daemon used over `seconds` (scraping `http` when given)."""
    cmd = node_command("n1", etcd_url, f"127.0.0.1:{free_port()}",
                       http_listen=http or "off")  # fmt: skip
    with (logs / f"tcphopd-{'on' if http else 'off'}.log").open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        time.sleep(WARMUP_S)
        start, started = cpu_seconds(proc.pid), time.monotonic()
        while (left := seconds - (time.monotonic() - started)) > 0:
            if http:
                for path in ("/metrics", "/healthz"):
                    with urllib.request.urlopen(f"http://{http}{path}", timeout=5) as r:
                        r.read()
            time.sleep(min(every, left))
        return (cpu_seconds(proc.pid) - start) / (time.monotonic() - started)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--scrape-every", type=float, default=5.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tcphop-idle-") as tmp:  # logs: --keep to look
        etcd = EmbeddedEtcd(Path(tmp) / "etcd")
        etcd.start()
        try:
            off = measure(etcd.url, Path(tmp), "", args.seconds, args.scrape_every)
            http = f"127.0.0.1:{free_port()}"
            on = measure(etcd.url, Path(tmp), http, args.seconds, args.scrape_every)
        finally:
            etcd.stop()
    print(f"| idle tcphopd, {args.seconds:g} s each | CPU (% of one core) |")
    print("|---|---:|")
    print(f"| metrics and health listener off | {100 * off:.2f} |")
    print(f"| on, /metrics + /healthz every {args.scrape_every:g} s | {100 * on:.2f} |")
    print(f"| difference | {100 * (on - off):+.2f} |")


if __name__ == "__main__":
    main()
