"""A lab process is `running` from its spawn on, through the exec of the program it starts."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from lab.state import LabProcess


def test_a_process_is_running_through_the_exec_that_starts_its_program(tmp_path: Path) -> None:
    """`env` execs Python as `ip netns exec` execs etcd: in between, the command line reads
    empty for a moment. Polled without a pause from the spawn on, no process may look gone."""
    gone = 0
    for i in range(20):
        marker = str(tmp_path / f"marker-{i}")
        cmd = ["env", sys.executable, "-c", "import time; time.sleep(5)", marker]
        proc = LabProcess.spawn(f"p{i}", cmd, tmp_path / "log", marker, "")
        try:
            until = time.monotonic() + 0.05
            while time.monotonic() < until:
                if not proc.running():
                    gone += 1
                    break
        finally:
            proc.stop()
        assert not proc.running()
        os.waitpid(proc.pid, 0)  # our child: reap it
    assert gone == 0
