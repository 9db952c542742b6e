"""Who answers ARP for a VIP, as the router sees it: probe every few milliseconds from one of
the router's interfaces and print one JSON line per change (time, the MACs that answered).

    ip netns exec <router ns> python -m lab.arpwatch --ifname br2 --vip 10.A.100.10

Run by the chaos suite (bench/chaos.py) and the split-brain tests in the router's namespace:
two MACs in one answer set is two nodes claiming the VIP at once.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

from datapath.arp import who_has

PROBE_TIMEOUT_S = 0.01


def mac_of(ifname: str) -> bytes:
    text = Path(f"/sys/class/net/{ifname}/address").read_text().strip()
    return bytes.fromhex(text.replace(":", ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ifname", required=True)
    parser.add_argument("--vip", required=True)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    mac, shown = mac_of(args.ifname), None
    while True:
        answered = sorted(m.hex(":") for m in who_has(args.ifname, mac, args.vip, PROBE_TIMEOUT_S))
        if answered != shown:
            sys.stdout.write(json.dumps({"t": time.time(), "macs": answered}) + "\n")
            sys.stdout.flush()
            shown = answered


if __name__ == "__main__":
    main()
