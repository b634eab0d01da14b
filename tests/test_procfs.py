"""The /proc readers on processes whose state is known."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from search.measure._procfs import (
    ProcessTree,
    group_alive,
    read_pss_bytes,
    read_resident,
    read_stat,
    read_vmhwm_bytes,
)

MB = 1024**2


def test_readers_on_own_process() -> None:
    resident = read_resident(os.getpid())
    pss = read_pss_bytes(os.getpid())
    stat = read_stat(os.getpid())
    assert resident is not None and pss is not None and stat is not None
    assert 0 < pss <= resident.total + MB
    assert stat[0] == os.getppid()
    assert (read_vmhwm_bytes(os.getpid()) or 0) >= resident.total - MB
    assert read_resident(2**22 + 12345) is None and read_stat(2**22 + 12345) is None


_FREE_THEN_RESET = """
import json, os
from search.measure._procfs import read_resident, read_vmhwm_bytes, reset_own_vmhwm
block = b"1" * (512 << 20)
del block
before, reset = read_vmhwm_bytes(os.getpid()), reset_own_vmhwm()
print(json.dumps([before, reset, read_vmhwm_bytes(os.getpid()), read_resident(os.getpid()).total]))
"""


def test_reset_lowers_the_high_water_mark_to_the_resident_size() -> None:
    # In a child of its own: the reset changes the calling process's VmHWM, not a test session's.
    out = subprocess.run([sys.executable, "-c", _FREE_THEN_RESET], capture_output=True, text=True, check=True)
    before, reset, after, resident = json.loads(out.stdout)
    assert reset is True and before > 512 * MB
    assert resident - MB <= after < resident + 16 * MB


def test_tree_follows_group_and_descendants() -> None:
    script = "import os, time\nif os.fork() == 0:\n    time.sleep(5)\nelse:\n    time.sleep(5)\n"
    child = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    try:
        tree = ProcessTree(root_pid=child.pid)
        deadline = time.monotonic() + 10
        while len(tree.scan()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert child.pid in tree.pids and len(tree.pids) == 2
        assert sorted(group_alive(child.pid)) == sorted(tree.pids)
    finally:
        os.killpg(child.pid, 9)
        child.wait()
