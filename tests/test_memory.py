"""The PSS accounting on controlled children whose true footprint is known."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

from search.memory import TreeSampler
from search.procfs import read_pss_bytes

MB = 1024**2

# Allocates SIZE_MB of private, written pages, then forks two workers that only read them.
_SHARED_CHILD = textwrap.dedent(
    """
    import mmap, os, sys, time
    size = int(sys.argv[1]) * 1024 * 1024
    block = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    for offset in range(0, size, mmap.PAGESIZE):
        block[offset] = 1
    time.sleep(0.5)
    workers = []
    for _ in range(2):
        pid = os.fork()
        if pid == 0:
            total = 0
            for _ in range(3):
                for offset in range(0, size, mmap.PAGESIZE):
                    total += block[offset]
                time.sleep(0.3)
            os._exit(0)
        workers.append(pid)
    for pid in workers:
        os.waitpid(pid, 0)
    """
)

# Grows by 20 MB every 10 ms until killed.
_GROWING_CHILD = textwrap.dedent(
    """
    import time
    chunks = []
    while True:
        chunks.append(bytearray(b"x" * (20 * 1024 * 1024)))
        time.sleep(0.01)
    """
)


# Grows 300 MB of private memory in 50 MB steps, says so on stdout, then holds it for 2 s.
_LONE_CHILD = textwrap.dedent(
    """
    import mmap, time
    size = 50 * 1024 * 1024
    blocks = []
    for _ in range(6):
        block = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        for offset in range(0, size, mmap.PAGESIZE):
            block[offset] = 1
        blocks.append(block)
        time.sleep(0.1)
    print("grown", flush=True)
    time.sleep(2.0)
    """
)


def _sample(script: str, *args: str, **sampler_options: object) -> tuple[object, subprocess.Popen]:
    child = subprocess.Popen([sys.executable, "-c", script, *args], start_new_session=True)
    sampler = TreeSampler(root_pid=child.pid, **sampler_options)  # type: ignore[arg-type]
    sampler.start()
    return sampler, child


def test_shared_pages_of_forked_workers_count_once() -> None:
    size_mb = 400
    sampler, child = _sample(_SHARED_CHILD, str(size_mb))
    child.wait(timeout=120)
    report = sampler.stop()  # type: ignore[attr-defined]
    assert report.max_processes == 3
    assert report.pss_samples >= 2
    # Three processes map the 400 MB: RSS counts it three times, PSS once (plus ~3 interpreters).
    assert report.peak_rss_tree_bytes > 2.5 * size_mb * MB
    assert size_mb * MB < report.peak_host_bytes < (size_mb + 60) * MB
    assert report.peak_host_lower_bytes <= report.peak_host_bytes <= report.peak_host_upper_bytes
    assert report.series["t_s"] and len(report.series["t_s"]) == len(report.series["host_bytes"])


def test_limit_is_enforced_fast() -> None:
    crossed: list[int] = []

    def kill(estimate: int) -> None:
        crossed.append(estimate)
        child.kill()

    limit = 300 * MB
    child = subprocess.Popen([sys.executable, "-c", _GROWING_CHILD], start_new_session=True)
    sampler = TreeSampler(root_pid=child.pid, limit_bytes=limit, on_limit=kill)
    started = time.monotonic()
    sampler.start()
    child.wait(timeout=60)
    reaction = time.monotonic() - started
    report = sampler.stop()
    assert report.limit_exceeded and len(crossed) == 1
    assert limit <= crossed[0] < limit * 1.1
    assert reaction < 10


def test_a_lone_process_is_tracked_with_few_exact_reads() -> None:
    # Without workers nothing shares the process's anonymous memory: the cheap reads track its PSS
    # exactly but for its file-backed share, so the sampler must not spend page walks on every new high.
    child = subprocess.Popen(
        [sys.executable, "-c", _LONE_CHILD], stdout=subprocess.PIPE, start_new_session=True
    )
    sampler = TreeSampler(root_pid=child.pid)
    sampler.start()
    assert child.stdout is not None and child.stdout.readline().strip() == b"grown"
    time.sleep(0.3)
    true_pss = read_pss_bytes(child.pid)
    child.wait(timeout=60)
    report = sampler.stop()
    assert true_pss is not None and true_pss > 300 * MB
    assert abs(report.peak_host_bytes - true_pss) < 0.02 * true_pss
    assert report.max_processes == 1
    # Its RssAnon alone bounds it from below, well above the few exact reads taken while it grew.
    assert 0.95 * report.peak_host_bytes < report.peak_host_lower_bytes <= report.peak_host_bytes
    assert 1 <= report.pss_samples <= report.fast_samples // 10
