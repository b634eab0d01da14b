"""The /proc readers on processes whose state is known."""

from __future__ import annotations

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
