"""A LAN of network namespaces with etcd and real tcphopd nodes holding VIPs on eth0."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.netlab import NetCluster as Cluster
from cli.netlab import NetLab, netns_available
from tests.conftest import need


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    ok, why = netns_available()
    need("netns", ok, why)
    c = Cluster.up(NetLab(3), tmp_path)
    try:
        yield c
    finally:
        c.down()
