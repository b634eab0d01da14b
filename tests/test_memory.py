"""The PSS accounting on controlled children whose true footprint is known."""

from __future__ import annotations

import collections
import os
import statistics
import subprocess
import sys
import textwrap
import time

import pytest

from search.measure._memory import TreeSampler
from search.measure._procfs import Resident, read_pss_bytes
from search.measure._series import MAX_SERIES_POINTS, SpreadSample

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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


# Writes SIZE_MB of private pages, forks four workers that sleep, then rewrites every page itself:
# each write copies a page the workers still share, which raises the tree's PSS by SIZE_MB in all
# while no process's RSS moves (what a garbage collection of the parent does to the pages holding
# the objects it tracks).
_COPY_ON_WRITE_CHILD = textwrap.dedent(
    """
    import mmap, os, signal, sys, time
    size = int(sys.argv[1]) * 1024 * 1024
    block = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    for offset in range(0, size, mmap.PAGESIZE):
        block[offset] = 1
    workers = []
    for _ in range(4):
        pid = os.fork()
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        workers.append(pid)
    time.sleep(1.0)
    for offset in range(0, size, mmap.PAGESIZE):
        block[offset] = 2
    print("rewritten", flush=True)
    sys.stdin.readline()
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    """
)


@pytest.mark.slow
def test_an_exact_read_on_request_sees_copies_that_rss_does_not() -> None:
    size_mb = 500
    child = subprocess.Popen(
        [sys.executable, "-c", _COPY_ON_WRITE_CHILD, str(size_mb)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    # No budget to speak of: the reads at the forks (five processes of 500 MB) spend the first
    # allowance, and from then on exact reads come only when asked for.
    sampler = TreeSampler(root_pid=child.pid, pss_cpu_budget=1e-9)
    sampler.start()
    assert child.stdout is not None and child.stdout.readline().strip() == b"rewritten"
    before = sampler.peak_bytes
    sampler.request_exact()
    time.sleep(0.5)
    assert child.stdin is not None
    child.stdin.write(b"\n")
    child.stdin.close()
    child.wait(timeout=60)
    report = sampler.stop()
    # The parent's copy and the workers' shared original: twice the block, once each.
    assert report.peak_host_bytes > 1.8 * size_mb * MB
    assert report.peak_host_bytes > before
    assert report.peak_host_bytes < (2 * size_mb + 80) * MB


# A simulated 24-hour trial sampled at 25 Hz, the sampler's default rate away from the limit.
_DAY_AT_25_HZ = 24 * 3600 * 25


def _stored_items(obj: object) -> int:
    """Elements held in the containers of ``obj`` and of the ``search.measure._memory`` objects it holds."""
    total = 0
    for value in vars(obj).values():
        if isinstance(value, (list, dict, set, tuple, collections.deque)):
            total += len(value)
        elif type(value).__module__ == "search.measure._memory":
            total += _stored_items(value)
    return total


def _estimate_at(i: int) -> int:
    # A deterministic, jagged curve (no two neighbours alike) under 200 MB.
    return 100 * MB + (i * 7919) % 100_003 * 1000


def _old_downsampling(
    t: list[float], est: list[int], rss: list[int], pss_t: list[float], pss_v: list[int], step: int
) -> dict[str, list[float | None]]:
    """The end-of-trial downsampling the sampler did before it decimated as it went, at a given step."""
    t_out: list[float | None] = []
    est_out: list[float | None] = []
    rss_out: list[float | None] = []
    pss_out: list[float | None] = []
    pss_index = 0
    for lo in range(0, len(t), step):
        hi = min(len(t), lo + step)
        best = max(range(lo, hi), key=lambda i: est[i])
        t_out.append(round(t[best], 3))
        est_out.append(est[best])
        rss_out.append(max(rss[lo:hi]))
        measured = None
        while pss_index < len(pss_t) and pss_t[pss_index] <= t[hi - 1]:
            measured = pss_v[pss_index] if measured is None else max(measured, pss_v[pss_index])
            pss_index += 1
        pss_out.append(measured)
    return {"t_s": t_out, "host_bytes": est_out, "rss_tree_bytes": rss_out, "pss_read_bytes": pss_out}


@pytest.mark.slow
def test_the_series_of_a_day_long_trial_stays_bounded() -> None:
    # No process is sampled: the samples go straight to the sampler's record, as its loop would.
    sampler = TreeSampler(root_pid=os.getpid())
    peak_at, peak = 1_234_567, 300 * MB
    bound = 5 * MAX_SERIES_POINTS
    for i in range(_DAY_AT_25_HZ):
        # The peak is reached twice: the first time is the one reported, as max() reported it.
        estimate = peak if i in (peak_at, peak_at + 1000) else _estimate_at(i)
        sampler._record(i / 25, estimate, estimate, 2 * estimate + i % 7)
        if i % 100_000 == 0:
            assert _stored_items(sampler) <= bound, f"{_stored_items(sampler)} items after {i + 1} samples"
    assert _stored_items(sampler) <= bound
    report = sampler._report()
    series = report.series
    assert report.fast_samples == _DAY_AT_25_HZ
    assert MAX_SERIES_POINTS // 2 <= len(series["t_s"]) <= MAX_SERIES_POINTS
    assert {len(values) for values in series.values()} == {len(series["t_s"])}
    # The global peak, its time and the RSS peak survive exactly.
    assert report.peak_host_bytes == peak and report.peak_time_s == peak_at / 25
    top = series["host_bytes"].index(peak)
    assert max(series["host_bytes"]) == peak  # type: ignore[type-var]
    assert series["t_s"][top] == round(peak_at / 25, 3)
    assert series["host_bytes"].count(peak) == 1  # both hits fall in one window of the day
    assert max(series["rss_tree_bytes"]) == 2 * peak + peak_at % 7  # type: ignore[type-var]
    # The windows span the whole day: the first starts at the first sample, the last ends at the last.
    width = -(-_DAY_AT_25_HZ // len(series["t_s"]))
    assert series["t_s"][0] < width / 25  # type: ignore[operator]
    assert series["t_s"][-1] >= (_DAY_AT_25_HZ - 2 * width) / 25  # type: ignore[operator]
    assert series["pss_read_bytes"] == [None] * len(series["t_s"])


@pytest.mark.parametrize("samples", [1, 399, 400, 401, 800, 801, 4321, 100_003])
def test_the_decimated_series_is_the_old_downsampling(samples: int) -> None:
    sampler = TreeSampler(root_pid=os.getpid())
    t = [i / 25 + (i % 3) * 0.0001 for i in range(samples)]
    est = [_estimate_at(i) for i in range(samples)]
    rss = [(i * 104_729) % 1_000_003 for i in range(samples)]
    pss_t: list[float] = []
    pss_v: list[int] = []
    for i in range(samples):
        # Exact reads now and then, some windows with several and many with none; the read is
        # recorded with the fast sample it was taken at.
        pss = est[i] - 5 * MB if i % 97 in (0, 3) else None
        if pss is not None:
            pss_t.append(t[i])
            pss_v.append(pss)
        sampler._record(t[i], est[i], est[i], rss[i], pss=pss)
    series = sampler._report().series
    old_step = -(-samples // MAX_SERIES_POINTS)
    old = _old_downsampling(t, est, rss, pss_t, pss_v, old_step)
    # The windows are the old ones at a power-of-two step, at most twice the old step: with that step
    # the output is exactly what the old downsampling gave.
    width = 1
    while -(-samples // width) > MAX_SERIES_POINTS:
        width *= 2
    assert old_step <= width < 2 * old_step or width == old_step == 1
    assert series == _old_downsampling(t, est, rss, pss_t, pss_v, width)
    if samples <= MAX_SERIES_POINTS:
        assert series == old
    # Against the old downsampling at its own step: the same peaks, at the same time, the same reads.
    for key in ("host_bytes", "rss_tree_bytes", "pss_read_bytes"):
        assert max(v for v in series[key] if v is not None) == max(v for v in old[key] if v is not None)
    top, old_top = series["host_bytes"].index(max(est)), old["host_bytes"].index(max(est))
    assert series["t_s"][top] == old["t_s"][old_top]
    assert len(series["t_s"]) <= MAX_SERIES_POINTS


def test_the_shared_discounts_kept_for_their_median_stay_bounded() -> None:
    # One per exact read of the root: a day at a few reads a second must not keep them all.
    values = [(i * 7919) % 1_000_003 for i in range(1_000_000)]
    sample = SpreadSample(1024)
    for i, value in enumerate(values):
        sample.add(value)
        if i < 1024:
            assert sample.values == values[: i + 1]  # exact while few
    assert len(sample.values) <= 1024
    # Every 1024th of the million, from the first: the smallest power-of-two stride that fits.
    assert sample.values == values[::1024]
    exact = sorted(values)[len(values) // 2]
    assert abs(statistics.median(sample.values) - exact) < 0.05 * exact


def test_what_is_kept_about_gone_processes_is_forgotten() -> None:
    sampler = TreeSampler(root_pid=os.getpid())
    gone = Resident(anon=1, file=0, shmem=0, hwm=1)
    sampler._first_seen.update({os.getpid(): gone, 2**22 + 1: gone})
    sampler._fault_mark.update({os.getpid(): (1, 1), 2**22 + 1: (1, 1)})
    sampler._tree.pids = {os.getpid()}
    sampler._forget_gone()
    assert set(sampler._first_seen) == set(sampler._fault_mark) == {os.getpid()}
