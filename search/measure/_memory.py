"""Peak memory of a process tree: cheap figures often, exact PSS when it pays.

The figure that answers "how much memory does this trial need" is the PSS (proportional set size)
summed over the trial's process tree: summing RSS counts every page that forked dataloader workers
share with the main process once per process (it overstated by up to 2.2x on real yolov5 runs). But
the kernel computes PSS by walking every resident page, ~62 ms of CPU for a 1 GB yolov5 tree, so it
cannot be read at 20 Hz on a 2-core machine without slowing the trial.

:class:`TreeSampler` therefore combines two reads:

* a *fast* read of ``/proc/PID/statm`` (resident pages, anonymous vs file-backed; ~4 us a process)
  at ``fast_hz`` for every process of the tree, rising near the limit. The tree is found by
  scanning ``/proc`` for the process group (~0.5 ms), but only when the kernel's last PID moved (a
  fork happened somewhere) and every 2 s otherwise;
* a *PSS* read of ``/proc/PID/smaps_rollup`` for the whole tree, rationed by a CPU budget and spent
  where it matters: on a new process (a fork) or a process gone, on a new high, on minor faults that
  RSS does not explain (copy-on-write breaks raise PSS without raising RSS; checked 4 times a second
  from ``/proc/PID/stat``), periodically, and once whatever the budget when the supervisor asks
  (:meth:`TreeSampler.request_exact`: the child entered a phase for the first time). A *lone*
  process (no dataloader workers) shares no anonymous memory, so its estimate is exact but for its
  file-backed share: it is re-read only when its file-backed pages moved by 5% or every 10 s. Each
  read walks every page of the trial and evicts its working set from the caches; on a 2-core
  machine reading a lone process about once a second cost the trial ~3% of its speed for nothing.

Between PSS reads, each process's PSS is carried forward: new anonymous memory counts in full (it is
private); file-backed and shared memory keep the proportion the last PSS read measured; a forked
process whose pages are not yet anchored counts only what it grew since it was first seen. The
result is reported with a lower bound (the highest PSS really read, or a lone process's highest
RssAnon) and an upper bound (every unanchored page counted as private).
"""

from __future__ import annotations

import dataclasses
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

from search.measure._procfs import (
    PAGE_SIZE,
    ProcessTree,
    Proportional,
    Resident,
    last_pid,
    read_pss,
    read_resident,
    read_stat,
    read_statm,
)
from search.measure._series import Series, SpreadSample

__all__ = ["DEFAULT_PSS_CPU_BUDGET", "MemoryReport", "TreeSampler"]

# The exact reads' root shared-page discounts kept for their median (see SpreadSample).
_MAX_SHARED_DISCOUNTS = 1024
# A lone process's PSS is re-read when its file-backed resident pages moved by this fraction, or
# after this many seconds.
_LONE_SHARED_DRIFT = 0.05
_LONE_PSS_PERIOD_S = 10.0
# The exact reads' share of one core. Their cost to the trial is several times their own CPU: each
# walks every page of every process and holds its mmap lock, and the trial then refills its caches.
# Measured with 2 workers and the RAM cache (a tree of 5 processes) on one core: at 1% the trial ran
# 6.5% slower than bare, at 0.25% 1.7%; the peak stayed within 0.7% of a 20 Hz reference's, while
# no exact reads at all left it 7-8% under (copy-on-write breaks in the workers go unseen).
DEFAULT_PSS_CPU_BUDGET = 0.0025


@dataclasses.dataclass
class MemoryReport:
    """What the sampler saw. All sizes in bytes, times in seconds since sampling started."""

    peak_host_bytes: int | None
    peak_host_lower_bytes: int | None
    peak_host_upper_bytes: int | None
    peak_rss_tree_bytes: int | None
    peak_time_s: float | None
    vmhwm_bytes: int | None
    method: str
    duration_s: float
    fast_samples: int
    pss_samples: int
    fast_hz: float
    pss_hz: float
    sampler_cpu_seconds: float
    pss_cpu_seconds: float
    root_pss_ratio: float | None
    root_shared_discount_bytes: int | None
    max_processes: int
    limit_exceeded: bool
    series: dict[str, list[float | None]]

    def to_dict(self) -> dict[str, Any]:
        """Returns the report as JSON-ready data."""
        return dataclasses.asdict(self)


@dataclasses.dataclass
class _Anchor:
    pss: Proportional
    resident: Resident  # as read by read_statm: file holds file + shmem

    def estimate(self, now: Resident) -> tuple[int, int]:
        """(central, upper) PSS of the process now, carried from this anchor."""
        # New anonymous memory is private to the process that allocated it; file-backed and
        # shared memory keep the proportion the last PSS read measured.
        base = self.resident.shared
        shared_ratio = (self.pss.file + self.pss.shmem) / base if base else 1.0
        shared = int(now.shared * shared_ratio)
        delta_anon = now.anon - self.resident.anon
        return max(0, self.pss.anon + delta_anon) + shared, self.pss.anon + max(0, delta_anon) + shared


class TreeSampler:
    """Samples the memory of a process tree in a background thread.

    Args:
        root_pid: The trial's main process (leader of its own process group).
        fast_hz: Rate of the cheap reads, which also enforce ``limit_bytes``; it rises to
            ``near_limit_hz`` once the estimate passes 75% of the limit.
        pss_cpu_budget: Fraction of one core that PSS reads may use on average.
        limit_bytes: Host memory limit; when the estimated tree PSS crosses it, ``on_limit`` runs.
        on_limit: Called once from the sampler thread with the estimate that crossed the limit.
        near_limit_hz: Rate of the cheap reads close to the limit.
    """

    def __init__(
        self,
        *,
        root_pid: int,
        fast_hz: float = 25.0,
        pss_cpu_budget: float = DEFAULT_PSS_CPU_BUDGET,
        limit_bytes: int | None = None,
        on_limit: Callable[[int], None] | None = None,
        near_limit_hz: float = 400.0,
    ) -> None:
        self._tree = ProcessTree(root_pid=root_pid)
        self._interval = 1.0 / fast_hz
        self._near_interval = 1.0 / near_limit_hz
        self._budget = pss_cpu_budget
        self._limit = limit_bytes
        self._on_limit = on_limit
        self._stop = threading.Event()
        self._exact_requested = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memfront-sampler", daemon=True)
        self._anchors: dict[int, _Anchor] = {}
        self._first_seen: dict[int, Resident] = {}
        self._fault_mark: dict[int, tuple[int, int]] = {}
        self._start = 0.0
        self._cpu = 0.0
        self._pss_cpu = 0.0
        self._root_pss_ratio: float | None = None
        # One per exact read that read the root: rationed, but a long trial at a few reads a second
        # would still hold hundreds of thousands, so a bounded, evenly spread sample of them.
        self._root_shared_discounts = SpreadSample(_MAX_SHARED_DISCOUNTS)
        self._fast_samples = 0
        self._pss_samples = 0
        self._max_processes = 0
        self._peak = 0
        self._peak_time: float | None = None
        self._peak_upper = 0
        self._peak_pss = 0
        self._peak_anon_lone = 0
        self._peak_rss = 0
        self._vmhwm: int | None = None
        self._limit_hit = False
        # Decimated as it grows: the fast samples come at 25-400 Hz for the whole trial.
        self._series = Series()
        self.current_bytes = 0

    def start(self) -> None:
        """Starts sampling in the background."""
        self._start = time.monotonic()
        self._thread.start()

    def stop(self) -> MemoryReport:
        """Stops sampling and returns the report."""
        self._stop.set()
        self._thread.join()
        return self._report()

    def request_exact(self) -> None:
        """Asks for an exact PSS read at the next sample, whatever the CPU budget has left.

        For the moments when the tree's sharing changes at once, such as a phase change of the
        trial: a garbage collection that copies the pages it shares with its workers raises PSS
        without raising RSS, and a short run (a probe) has spent its budget on its forks by then.
        """
        self._exact_requested.set()

    @property
    def peak_bytes(self) -> int:
        """The highest estimate of the tree's PSS so far (0 before the first sample)."""
        return self._peak

    @property
    def pids(self) -> set[int]:
        """The processes of the tree as last seen."""
        return set(self._tree.pids)

    def _run(self) -> None:
        cpu0 = time.thread_time()
        next_check = 0.0
        next_full_scan = 0.0
        seen_pid = -1
        last_pss = -1e9
        pss_period = 1.0
        unexplained = 0
        while not self._stop.is_set():
            now = time.monotonic() - self._start
            if now >= next_check:
                # Rescanning /proc costs ~0.5 ms: only when a process was created since the last
                # scan (the kernel's last PID moved), and every 2 s in case that sign was missed.
                newest = last_pid()
                if newest != seen_pid or now >= next_full_scan:
                    self._tree.scan()
                    seen_pid, next_full_scan = newest, now + 2.0
                    self._forget_gone()
                unexplained = self._unexplained_faults()
                root_status = read_resident(self._tree.root_pid)
                if root_status is not None:
                    self._vmhwm = root_status.hwm
                next_check = now + 0.25
            resident = {pid: r for pid in self._tree.pids if (r := read_statm(pid)) is not None}
            if resident:
                estimate, upper = self._estimate(resident)
                if len(resident) == 1:
                    # A lone process shares no anonymous memory: its RssAnon is a floor of its PSS.
                    anon = next(iter(resident.values())).anon
                    self._peak_anon_lone = max(self._peak_anon_lone, anon)
                    estimate, upper = max(estimate, anon), max(upper, anon)
                pss_read = None
                want_pss = self._wants_pss(resident, estimate, unexplained, now - last_pss, pss_period)
                # One budget whatever the tree's size: a tree of 5 processes costs 5 times as much to
                # read, so it is re-anchored less often (see DEFAULT_PSS_CPU_BUDGET).
                allowance = self._budget * now + 0.1 - self._pss_cpu
                # Near the limit the page walks give way to fast reads; a requested one passes up
                # to just below it, since a probe near the limit is what it is asked for.
                requested = self._exact_requested.is_set() and not self._at_limit(estimate)
                if requested or (want_pss and allowance > 0 and not self._near_limit(estimate)):
                    self._exact_requested.clear()
                    t0 = time.thread_time()
                    measured = self._read_pss(list(resident))
                    cost = time.thread_time() - t0
                    self._pss_cpu += cost
                    last_pss, unexplained = now, 0
                    pss_period = max(1.0, cost / self._budget)
                    if measured is not None:
                        estimate = upper = measured
                        self._peak_pss = max(self._peak_pss, measured)
                        pss_read = measured
                self._record(now, estimate, upper, sum(r.total for r in resident.values()), pss_read)
                if self._limit is not None and estimate >= self._limit and not self._limit_hit:
                    self._limit_hit = True
                    if self._on_limit is not None:
                        self._on_limit(estimate)
            # Importing torch maps and faults in ~1 GB within seconds: with a limit, sample fast
            # through start-up as well as near the limit.
            starting = self._limit is not None and now < 5.0
            near = starting or self._near_limit(self.current_bytes)
            interval = self._near_interval if near else self._interval
            delay = interval - ((time.monotonic() - self._start) - now)
            if delay > 0:
                self._stop.wait(delay)
        self._cpu = time.thread_time() - cpu0

    def _forget_gone(self) -> None:
        # Workers come and go (a new set each validation, each epoch without persistent workers):
        # what was kept about the gone ones would grow for the whole trial, and a reused PID would
        # inherit a stranger's first-seen baseline.
        live = self._tree.pids
        for kept in (self._first_seen, self._fault_mark):
            for pid in kept.keys() - live:
                del kept[pid]

    def _wants_pss(
        self, resident: dict[int, Resident], estimate: int, unexplained: int, since_pss: float, period: float
    ) -> bool:
        """Whether an exact read would change the figure enough to pay for its page walk."""
        if set(resident) != set(self._anchors):
            return True  # a fork, or an exit that unshared pages
        if len(resident) == 1:
            # A lone process shares no anonymous memory with anything (it was exec'ed, or its workers
            # are gone and re-anchored it): its private part is exactly RssAnon between reads, and
            # only its file-backed share can drift. Each walk evicts the trial's working set from the
            # caches, so re-read only when that share moved or the read is old.
            ((pid, now),) = resident.items()
            anchored = self._anchors[pid].resident.shared
            drifted = abs(now.shared - anchored) > _LONE_SHARED_DRIFT * max(anchored, 1)
            return drifted or since_pss >= _LONE_PSS_PERIOD_S
        new_high = estimate > self._peak_pss * 1.03
        return new_high or unexplained > 0.01 * max(estimate, 1) or since_pss >= period

    def _near_limit(self, estimate: int) -> bool:
        return self._limit is not None and estimate >= 0.75 * self._limit

    def _at_limit(self, estimate: int) -> bool:
        return self._limit is not None and estimate >= 0.95 * self._limit

    def _unexplained_faults(self) -> int:
        # A copy-on-write break raises PSS without raising RSS, but it is a minor fault: faults that
        # RSS growth does not explain are a cheap sign that the last PSS read has gone stale.
        unexplained = 0
        for pid in self._tree.pids:
            stat = read_stat(pid)
            mark = self._fault_mark.get(pid)
            if stat is not None and mark is not None:
                _, _, minflt, rss_pages = stat
                faulted = (minflt - mark[0]) * PAGE_SIZE
                unexplained += max(0, faulted - max(0, rss_pages * PAGE_SIZE - mark[1]))
        return unexplained

    def _estimate(self, resident: dict[int, Resident]) -> tuple[int, int]:
        estimate = upper = 0
        for pid, now in resident.items():
            anchor = self._anchors.get(pid)
            if anchor is not None:
                central, high = anchor.estimate(now)
                estimate += central
                upper += high
                continue
            first = self._first_seen.setdefault(pid, now)
            # A forked worker starts by sharing its parent's pages: only what it adds is new. The
            # root was exec'ed, so all of its memory is its own.
            base = 0 if pid == self._tree.root_pid else first.anon
            estimate += max(0, now.anon - base) + (now.file + now.shmem if pid == self._tree.root_pid else 0)
            upper += now.total
        return estimate, upper

    def _read_pss(self, pids: list[int]) -> int | None:
        reads = []
        for pid in pids:
            pss, resident, stat = read_pss(pid), read_statm(pid), read_stat(pid)
            if pss is not None and resident is not None and stat is not None:
                reads.append((pid, pss, resident, stat))
        # The reads are one process after another: a process that exits meanwhile hands its share of
        # the pages it shared to those read after it, and the sum counts those pages up to twice
        # (a worker read at a third, its parent at the whole). Such a pass is not a measurement.
        if not reads or any(read_statm(pid) is None for pid in pids):
            return None
        anchors: dict[int, _Anchor] = {}
        for pid, pss, resident, stat in reads:
            anchors[pid] = _Anchor(pss=pss, resident=resident)
            if pid == self._tree.root_pid and resident.total:
                self._root_pss_ratio = pss.total / resident.total
                self._root_shared_discounts.add(max(0, resident.shared - pss.file - pss.shmem))
            _, _, minflt, rss_pages = stat
            self._fault_mark[pid] = (minflt, rss_pages * PAGE_SIZE)
        self._anchors = anchors
        self._pss_samples += 1
        return sum(pss.total for _, pss, _, _ in reads)

    def _record(self, now: float, estimate: int, upper: int, rss_sum: int, pss: int | None = None) -> None:
        self._fast_samples += 1
        self.current_bytes = estimate
        self._max_processes = max(self._max_processes, len(self._tree.pids))
        if estimate > self._peak:
            self._peak = estimate
            self._peak_time = now
        self._peak_upper = max(self._peak_upper, upper, estimate)
        self._peak_rss = max(self._peak_rss, rss_sum)
        self._series.add(now, estimate, rss_sum, pss)

    def _report(self) -> MemoryReport:
        duration = max(time.monotonic() - self._start, 1e-9)
        discounts = self._root_shared_discounts.values
        peak = self._peak if self._fast_samples else None
        return MemoryReport(
            peak_host_bytes=peak,
            peak_host_lower_bytes=max(self._peak_pss, self._peak_anon_lone) or None,
            peak_host_upper_bytes=self._peak_upper or None,
            peak_rss_tree_bytes=self._peak_rss or None,
            peak_time_s=self._peak_time,
            vmhwm_bytes=self._vmhwm,
            method=(
                "tree PSS from /proc/PID/smaps_rollup, carried between reads by per-process RSS "
                "deltas from /proc/PID/stat"
            ),
            duration_s=duration,
            fast_samples=self._fast_samples,
            pss_samples=self._pss_samples,
            fast_hz=self._fast_samples / duration,
            pss_hz=self._pss_samples / duration,
            sampler_cpu_seconds=self._cpu,
            pss_cpu_seconds=self._pss_cpu,
            root_pss_ratio=self._root_pss_ratio,
            # The median, not the last: now and then an exact read finds 3-4 times the usual share of
            # the process's file pages mapped elsewhere for a moment (20-30 MiB instead of 7.6 in 3
            # of 9 bench runs), and the kernel floor would inherit that dip from a last read.
            root_shared_discount_bytes=int(statistics.median(discounts)) if discounts else None,
            max_processes=self._max_processes,
            limit_exceeded=self._limit_hit,
            series=self._series.to_dict(),
        )
