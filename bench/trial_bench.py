"""Benchmark of memfront's trial runner: its time overhead, the accuracy of its peak, its limit reaction.

What it measures, side by side in one run, on a synthetic demo dataset (``search.data._demo``):

1. Overhead. The wall time of a trial under memfront (``search.trial._supervisor.run_trial``: a
   ``python -m search.child.trainer`` child whose tree is sampled) against the *same* yolov5 training run
   started bare: a plain subprocess that applies the same ``search.child.compat`` adaptations and calls
   ``yolov5.train.main`` with the same options, with nothing sampling it. Runs alternate
   (bare, memfront, memfront, bare, ...) in pairs; goal: median ratio memfront/bare <= 1.03. The
   memfront time is the whole ``run_trial`` call (everything memfront adds); the bare time is its
   process from start to exit. The sampler's own CPU seconds are shown as a fraction of the wall time.
   1b. The same comparison run *side by side*: the bare run and the memfront trial start together,
   each held to a core of its own with one torch thread (memfront's supervising thread and sampler
   on the trial's core), alternating the cores. Whatever slows the machine for a while slows both
   alike, so the ratio keeps only what memfront adds; same goal, with a bootstrap 95% interval of
   the median. 1c. The same with 2 dataloader workers and the RAM cache (a tree of 5 processes,
   whose exact reads cost 5 times as much); same goal. 1d. The control: two bare runs side by
   side, whose ratio shows what this measurement itself can resolve on this machine.
2. Peak accuracy, ``workers=0``: memfront's ``peak_host_bytes`` against the kernel's ``VmHWM`` of
   the same (single) process at its exit, which ``wait4`` returns as ``ru_maxrss``; goal within 2%.
3. Peak accuracy, ``workers=2`` and ``cache=ram``: against an expensive reference sampler (the
   PSS of every process of the trial's process group, read from ``/proc/PID/smaps_rollup`` at up
   to 20 Hz) that watches the *same* runs as memfront; goal within 3% in each run. The reference
   slows the runs it watches (its overhead does not matter there); the same trial is also run
   unwatched to show how much its peak varies from run to run, which is why a reference taken
   from another run could not judge a few percent.
4. Limit reaction: trials with a memory limit L at 40/60/80% of the ``workers=0`` peak; how far
   above L the trial got before it was stopped, by memfront's own peak and by the kernel's
   ``ru_maxrss`` of the (single) child; goal <= 1.03 x L.

Run from the repository root (about 2 minutes with ``--quick``; about 25 minutes in full)::

    .venv/bin/python bench/trial_bench.py [--quick] [--out bench/results/trial_bench.json]

Beside 2 and 4 it prints RSS-only cross-checks (memfront's sampled RSS peak against the kernel's
``ru_maxrss``), which do not depend on PSS: when another process on the machine maps libtorch, the
trial shares those pages, its PSS falls below its RSS and the RSS-based references overstate it; the
bench counts such processes before every run and warns.

The bench process itself never imports torch, yolov5 or numpy: pages of their libraries mapped by
the bench would be shared with the trial and lower the trial's PSS below its RSS.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.metadata
import json
import os
import platform
import random
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from trial_runs import (
    OTHER_TORCH,
    REPO_ROOT,
    TrialReference,
    check_bare,
    check_record,
    child_env,
    children_cpu,
    libtorch_holders,
    run_bare,
    run_memfront,
    run_side_by_side,
    steal_seconds,
)

from search.measure._snippet import run_snippet
from search.trial._config import TrialConfig, TrialLimits
from search.trial._record import TrialRecord

MIB = 1024 * 1024

GOAL_OVERHEAD = 1.03
GOAL_PEAK_W0 = 0.02
GOAL_PEAK_W2 = 0.03
GOAL_LIMIT = 1.03
LIMIT_FRACTIONS = (0.4, 0.6, 0.8)


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """The scale of the benchmark."""

    images: int
    image_size: int
    imgsz: int
    batch: int
    epochs: int
    pairs: int
    side_by_side_pairs: int = 10
    side_by_side_workers_pairs: int = 4
    control_pairs: int = 4
    reference_runs: int = 3
    unwatched_runs: int = 2
    reference_hz: float = 20.0


# Wall times of identical runs vary by +-15% on this kind of machine, for reasons outside the runs
# (bare runs alone ranged 21.3-26.5 s): 9 alternating pairs, their median and quartiles.
FULL = BenchConfig(images=256, image_size=320, imgsz=160, batch=16, epochs=2, pairs=9)
QUICK = BenchConfig(
    images=16,
    image_size=96,
    imgsz=64,
    batch=16,
    epochs=1,
    pairs=2,
    side_by_side_pairs=1,
    side_by_side_workers_pairs=1,
    control_pairs=1,
    reference_runs=1,
    unwatched_runs=1,
)


def _memory(record: TrialRecord) -> dict[str, Any]:
    return {k: v for k, v in record.memory.items() if k != "series"}


def _cgroup_peak(record: TrialRecord) -> int | None:
    """The kernel's per-trial cgroup peak (page cache included), where the trial had a cgroup."""
    return (record.memory.get("cgroup") or {}).get("peak_bytes")


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _mib(value: float | None) -> str:
    return "-" if value is None else f"{value / MIB:,.1f} MiB"


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("PASS" if ok else "MISS")


def machine() -> dict[str, Any]:
    """The machine and the versions the bench ran on (torch and yolov5 are not imported)."""
    mem_total = None
    with contextlib.suppress(OSError), open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemTotal:"):
                mem_total = int(line.split()[1]) * 1024

    def version(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "mem_total_bytes": mem_total,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "torch": version("torch"),
        "yolov5": version("yolov5"),
        "numpy": version("numpy"),
        "loadavg_start": os.getloadavg(),
        "other_libtorch_processes_start": libtorch_holders({os.getpid()}),
    }


def make_dataset(root: Path, scale: BenchConfig) -> Path:
    """Writes the demo dataset in a subprocess (so that this process stays free of numpy)."""
    code = (
        "from search.data._demo import make_demo_dataset; "
        f"result(str(make_demo_dataset({str(root)!r}, images={scale.images}, size={scale.image_size})))"
    )
    return Path(run_snippet(code, what="write the bench's dataset"))


def warm_up(root: Path) -> float:
    """Imports torch and yolov5's trainer once, untimed, so that no timed run pays for a cold disk cache."""
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-c", "import torch, yolov5.train"],
        env=child_env(root / "warmup-config"),
        check=False,
        capture_output=True,
    )
    return time.monotonic() - started


def bench(scale: BenchConfig, root: Path, log: Any) -> dict[str, Any]:
    """Runs all four measurements and returns their figures."""
    data_yaml = make_dataset(root / "dataset", scale)
    log(f"dataset: {scale.images} train images of {scale.image_size} px; warming up ...")
    log(f"warm-up import: {warm_up(root):.1f} s")
    base = TrialConfig(
        data=str(data_yaml),
        model="yolov5n.yaml",
        batch=scale.batch,
        imgsz=scale.imgsz,
        cache="none",
        workers=0,
        epochs=scale.epochs,
        seed=0,
    )

    # 1 + 2: alternating pairs, workers=0.
    pairs: list[dict[str, Any]] = []
    for index in range(scale.pairs):
        order = ("bare", "memfront") if index % 2 == 0 else ("memfront", "bare")
        pair: dict[str, Any] = {"order": list(order)}
        for which in order:
            cpu_before, steal_before = children_cpu(), steal_seconds()
            if which == "bare":
                bare = run_bare(base, root)
                check_bare(bare, f"pair {index + 1}")
                pair["bare_wall_s"] = bare.wall_s
                pair["bare_child_cpu_s"] = children_cpu() - cpu_before
                pair["bare_steal_s"] = steal_seconds() - steal_before
                pair["bare_ru_maxrss_bytes"] = bare.ru_maxrss_bytes
            else:
                record, wall, parent_cpu = run_memfront(base, root)
                pair["memfront_child_cpu_s"] = children_cpu() - cpu_before
                pair["memfront_steal_s"] = steal_seconds() - steal_before
                check_record(record, f"pair {index + 1}")
                memory = record.memory
                pair.update(
                    memfront_wall_s=wall,
                    memfront_record_wall_s=record.wall_seconds,
                    memfront_parent_cpu_s=parent_cpu,
                    sampler_cpu_s=memory.get("sampler_cpu_seconds"),
                    sampler_cpu_fraction=_ratio(memory.get("sampler_cpu_seconds"), wall),
                    peak_host_bytes=record.peak_host_bytes,
                    vmhwm_bytes=memory.get("vmhwm_bytes"),
                    ru_maxrss_bytes=memory.get("ru_maxrss_bytes"),
                    peak_vs_vmhwm=_ratio(record.peak_host_bytes, memory.get("vmhwm_bytes")),
                    peak_vs_maxrss=_ratio(record.peak_host_bytes, memory.get("ru_maxrss_bytes")),
                    rss_sampled_vs_maxrss=_ratio(
                        memory.get("peak_rss_tree_bytes"), memory.get("ru_maxrss_bytes")
                    ),
                    cgroup_peak_bytes=_cgroup_peak(record),
                    cgroup_vs_peak=_ratio(_cgroup_peak(record), record.peak_host_bytes),
                    memory=_memory(record),
                )
        pair["ratio"] = pair["memfront_wall_s"] / pair["bare_wall_s"]
        pairs.append(pair)
        log(
            f"pair {index + 1}/{scale.pairs} ({' then '.join(order)}): bare {pair['bare_wall_s']:.1f} s, "
            f"memfront {pair['memfront_wall_s']:.1f} s, ratio {pair['ratio']:.3f}; "
            f"peak {_mib(pair['peak_host_bytes'])} vs VmHWM {_mib(pair['vmhwm_bytes'])}"
        )

    # 1b: side by side, one core each, at the same time: the machine's drift cancels out. With no
    # workers (the goal), with 2 workers and the RAM cache (a tree of 5 processes, each read costing
    # more), and bare against bare (the control: what this measurement resolves). Interleaved, so
    # that each kind meets the machine's slow and fast spells alike.
    one_thread = base.model_copy(update={"threads": 1})
    kinds = {
        "side_by_side": (one_thread, False, scale.side_by_side_pairs),
        "side_by_side_workers": (
            one_thread.model_copy(update={"workers": 2, "cache": "ram"}),
            False,
            scale.side_by_side_workers_pairs,
        ),
        "side_by_side_control": (one_thread, True, scale.control_pairs),
    }
    side: dict[str, list[dict[str, Any]]] = {key: [] for key in kinds}
    cores = sorted(os.sched_getaffinity(0))
    rounds = max(n for _, _, n in kinds.values()) if len(cores) >= 2 else 0
    for index in range(rounds):
        bare_core, memfront_core = (cores[0], cores[1]) if index % 2 == 0 else (cores[1], cores[0])
        for key, (config, control, count) in kinds.items():
            if index >= count:
                continue
            result = run_side_by_side(
                config, root, bare_core=bare_core, memfront_core=memfront_core, control=control
            )
            side[key].append(result)
            log(
                f"{key.replace('_', ' ')} {index + 1}/{count} (bare on core {bare_core}, "
                f"{'second bare' if control else 'memfront'} on core {memfront_core}): bare "
                f"{result['bare_wall_s']:.1f} s, other {result['memfront_wall_s']:.1f} s, "
                f"ratio {result['ratio']:.3f}"
            )

    # 3: workers=2, cache=ram, against the reference sampler reading the same runs.
    config_w2 = base.model_copy(update={"workers": 2, "cache": "ram", "epochs": 1})
    workers2_runs: list[dict[str, Any]] = []
    for index in range(scale.reference_runs):
        with TrialReference(scale.reference_hz) as reference:
            record_w2, wall_w2, _ = run_memfront(config_w2, root)
        check_record(record_w2, "workers=2 under the reference")
        ref = reference.result()
        run = {
            "reference": ref,
            "memfront_wall_s": wall_w2,
            "used": record_w2.used,
            "peak_host_bytes": record_w2.peak_host_bytes,
            "peak_host_lower_bytes": record_w2.memory.get("peak_host_lower_bytes"),
            "peak_host_upper_bytes": record_w2.memory.get("peak_host_upper_bytes"),
            "peak_rss_tree_bytes": record_w2.memory.get("peak_rss_tree_bytes"),
            "vmhwm_bytes": record_w2.memory.get("vmhwm_bytes"),
            "peak_vs_reference": _ratio(record_w2.peak_host_bytes, ref.get("peak_pss_tree_bytes")),
            "cgroup_peak_bytes": _cgroup_peak(record_w2),
            "memory": _memory(record_w2),
        }
        workers2_runs.append(run)
        log(
            f"workers=2 cache=ram run {index + 1}/{scale.reference_runs} (used: workers "
            f"{record_w2.used.get('workers')}, cache {record_w2.used.get('cache')}): memfront "
            f"{_mib(record_w2.peak_host_bytes)} vs reference PSS {_mib(ref.get('peak_pss_tree_bytes'))} "
            f"({ref.get('hz', 0):.1f} Hz, same run, {wall_w2:.1f} s)"
        )
    # The same trial without the reference, which slows the run it watches: how much the peak itself
    # varies from run to run, and so why a reference from another run cannot judge a 3% goal.
    unwatched: list[dict[str, Any]] = []
    for index in range(scale.unwatched_runs):
        record_w2, wall_w2, _ = run_memfront(config_w2, root)
        check_record(record_w2, "workers=2")
        unwatched.append(
            {
                "memfront_wall_s": wall_w2,
                "peak_host_bytes": record_w2.peak_host_bytes,
                "pss_hz": record_w2.memory.get("pss_hz"),
                "sampler_cpu_seconds": record_w2.memory.get("sampler_cpu_seconds"),
            }
        )
        log(
            f"workers=2 cache=ram unwatched run {index + 1}: "
            f"peak {_mib(record_w2.peak_host_bytes)}, {wall_w2:.1f} s"
        )
    workers2 = {"runs": workers2_runs, "unwatched": unwatched}

    # 4: limit reaction, workers=0.
    framework_peak = int(statistics.median(p["peak_host_bytes"] for p in pairs))
    limits: list[dict[str, Any]] = []
    for fraction in LIMIT_FRACTIONS:
        limit = int(framework_peak * fraction)
        record, wall, _ = run_memfront(base, root, TrialLimits(memory_limit_bytes=limit))
        check_record(record, f"limit {fraction:.0%}", expected="memory_limit")
        maxrss = record.memory.get("ru_maxrss_bytes")
        limits.append(
            {
                "fraction": fraction,
                "limit_bytes": limit,
                "status": record.status,
                "wall_s": wall,
                "peak_host_bytes": record.peak_host_bytes,
                "peak_time_s": record.memory.get("peak_time_s"),
                "ru_maxrss_bytes": maxrss,
                "peak_rss_sampled_bytes": record.memory.get("peak_rss_tree_bytes"),
                "memfront_over_limit": _ratio(record.peak_host_bytes, limit),
                "maxrss_over_limit": _ratio(maxrss, limit),
                # Growth after memfront's last read (kill latency), independent of PSS vs RSS.
                "maxrss_over_sampled_rss": _ratio(maxrss, record.memory.get("peak_rss_tree_bytes")),
            }
        )
        log(
            f"limit {fraction:.0%} = {_mib(limit)}: {record.status} after {wall:.1f} s, "
            f"memfront peak/L {_fmt(limits[-1]['memfront_over_limit'])}, "
            f"ru_maxrss/L {_fmt(limits[-1]['maxrss_over_limit'])}, "
            f"ru_maxrss/sampled RSS {_fmt(limits[-1]['maxrss_over_sampled_rss'])}"
        )
    return {
        "base_config": base.model_dump(),
        "pairs": pairs,
        "median_ratio": statistics.median(p["ratio"] for p in pairs),
        **side,
        "workers2": workers2,
        "framework_peak_bytes": framework_peak,
        "limits": limits,
        "other_libtorch_processes_per_run": list(OTHER_TORCH),
    }


def _median_interval(values: list[float], rounds: int = 2000) -> tuple[float, float]:
    """A bootstrap 95% interval of the median (seeded: the same runs give the same interval)."""
    draw = random.Random(0)
    medians = sorted(statistics.median(draw.choices(values, k=len(values))) for _ in range(rounds))
    return medians[int(0.025 * rounds)], medians[int(0.975 * rounds) - 1]


def _side_by_side_rows(
    entries: list[dict[str, Any]], label: str, goal: bool
) -> list[tuple[str, str, str, str]]:
    if not entries:
        return []
    ratios = [e["ratio"] for e in entries]
    median = statistics.median(ratios)
    low, high = _median_interval(ratios)
    rows = [
        (f"{label}: ratio per pair", ", ".join(f"{r:.3f}" for r in ratios), "info", ""),
        (
            f"{label}: median (95% interval)",
            f"{median:.3f} ({low:.3f}-{high:.3f})",
            f"<= {GOAL_OVERHEAD}" if goal else "info",
            _verdict(median <= GOAL_OVERHEAD) if goal else "",
        ),
    ]
    measured = [e for e in entries if e.get("sampler_cpu_s") is not None and e.get("pss_cpu_s") is not None]
    sampler = [e["sampler_cpu_s"] / e["memfront_wall_s"] for e in measured]
    pss = [e["pss_cpu_s"] / e["memfront_wall_s"] for e in measured]
    if measured:
        rows.append(
            (
                f"{label}: sampler CPU / wall (PSS reads), median",
                f"{statistics.median(sampler):.2%} ({statistics.median(pss):.2%})",
                "info",
                "",
            )
        )
    return rows


def table(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """The summary rows: (figure, value, goal, verdict)."""
    pairs = results["pairs"]
    rows: list[tuple[str, str, str, str]] = []
    for index, pair in enumerate(pairs):
        rows.append(
            (
                f"1. wall memfront/bare, pair {index + 1}",
                f"{pair['ratio']:.3f} ({pair['memfront_wall_s']:.1f}/{pair['bare_wall_s']:.1f} s)",
                "",
                "",
            )
        )
    median = results["median_ratio"]
    rows.append(
        (
            "1. wall memfront/bare, median",
            f"{median:.3f}",
            f"<= {GOAL_OVERHEAD}",
            _verdict(median <= GOAL_OVERHEAD),
        )
    )
    if len(pairs) >= 4:
        low, _, high = statistics.quantiles([p["ratio"] for p in pairs], n=4)
        rows.append(("1. wall memfront/bare, quartiles", f"{low:.3f} .. {high:.3f}", "info", ""))
    memfront_walls = [p["memfront_wall_s"] for p in pairs]
    bare_walls = [p["bare_wall_s"] for p in pairs]
    rows.append(
        (
            "1. median wall memfront / median wall bare",
            f"{statistics.median(memfront_walls) / statistics.median(bare_walls):.3f} "
            f"({min(memfront_walls):.1f}-{max(memfront_walls):.1f} s / "
            f"{min(bare_walls):.1f}-{max(bare_walls):.1f} s)",
            "info",
            "",
        )
    )
    cpu_ratios = [
        p["memfront_child_cpu_s"] / p["bare_child_cpu_s"] for p in pairs if p.get("bare_child_cpu_s")
    ]
    if cpu_ratios:
        rows.append(
            ("1. trial CPU memfront/bare, median", f"{statistics.median(cpu_ratios):.3f}", "info", "")
        )
    steals = [(p["bare_steal_s"], p["memfront_steal_s"]) for p in pairs if "bare_steal_s" in p]
    if steals:
        # CPU time the hypervisor gave other guests during the runs: time this machine lost.
        rows.append(
            (
                "1. host steal during bare / memfront runs, max",
                f"{max(b for b, _ in steals):.2f} / {max(m for _, m in steals):.2f} s",
                "info",
                "",
            )
        )
    fractions = [p["sampler_cpu_fraction"] for p in pairs if p["sampler_cpu_fraction"] is not None]
    parent = [p["memfront_parent_cpu_s"] / p["memfront_wall_s"] for p in pairs]
    rows.append(
        ("1. sampler CPU / trial wall (max)", f"{max(fractions):.2%}" if fractions else "-", "info", "")
    )
    rows.append(("1. memfront parent CPU / wall (max)", f"{max(parent):.2%}", "info", ""))
    for key, label, goal in (
        ("side_by_side", "1b. same time, w=0", True),
        ("side_by_side_workers", "1c. same time, w=2 ram", True),
        ("side_by_side_control", "1d. control, bare/bare", False),
    ):
        rows.extend(_side_by_side_rows(results.get(key) or [], label, goal))
    for index, pair in enumerate(pairs):
        # The kernel's VmHWM of the (single) process at its exit is what wait4 returns as ru_maxrss;
        # a VmHWM read from /proc before the exit misses what interpreter shutdown still allocates.
        ratio = pair["peak_vs_maxrss"]
        ok = None if ratio is None else abs(ratio - 1) <= GOAL_PEAK_W0
        rows.append(
            (
                f"2. w=0 peak/VmHWM at exit (ru_maxrss), run {index + 1}",
                f"{_fmt(ratio)} ({_mib(pair['peak_host_bytes'])} / {_mib(pair['ru_maxrss_bytes'])})",
                f"1 +- {GOAL_PEAK_W0:.0%}",
                _verdict(ok),
            )
        )
    for key, label in (
        ("peak_vs_vmhwm", "2.   peak/VmHWM last read before exit, range"),
        ("rss_sampled_vs_maxrss", "2.   sampled RSS peak/ru_maxrss, range"),
        # The kernel's per-trial cgroup peak counts page cache too: a different figure, for comparison.
        ("cgroup_vs_peak", "2.   cgroup peak (page cache incl.)/peak, range"),
    ):
        values = [p[key] for p in pairs if p.get(key) is not None]
        if values:
            rows.append((label, f"{min(values):.3f} .. {max(values):.3f}", "info", ""))
    for index, w2 in enumerate(results["workers2"]["runs"]):
        ref = w2["reference"]
        ratio = w2["peak_vs_reference"]
        rows.append(
            (
                f"3. w=2 ram peak/reference PSS, run {index + 1}",
                f"{_fmt(ratio)} ({_mib(w2['peak_host_bytes'])} / {_mib(ref.get('peak_pss_tree_bytes'))})",
                f"1 +- {GOAL_PEAK_W2:.0%}",
                _verdict(None if ratio is None else abs(ratio - 1) <= GOAL_PEAK_W2),
            )
        )
        rows.append(
            (
                "3.   memfront lower .. upper",
                f"{_mib(w2['peak_host_lower_bytes'])} .. {_mib(w2['peak_host_upper_bytes'])}",
                "info",
                "",
            )
        )
        rows.append(("3.   RSS tree sum (memfront's reads)", _mib(w2["peak_rss_tree_bytes"]), "info", ""))
        rows.append(("3.   VmHWM (main process)", _mib(w2["vmhwm_bytes"]), "info", ""))
        if w2.get("cgroup_peak_bytes"):
            rows.append(("3.   cgroup peak (page cache incl.)", _mib(w2["cgroup_peak_bytes"]), "info", ""))
        rows.append(
            (
                "3.   reference: RSS sum, rate, memfront PSS rate",
                f"{_mib(ref.get('peak_rss_tree_bytes'))}, {ref.get('hz', 0):.1f} Hz, "
                f"{ref.get('max_processes')} procs; {w2['memory'].get('pss_hz', 0):.1f} Hz",
                "info",
                "",
            )
        )
    unwatched = results["workers2"]["unwatched"]
    if unwatched:
        peaks = [u["peak_host_bytes"] for u in unwatched]
        watched = [w["peak_host_bytes"] for w in results["workers2"]["runs"]]
        rows.append(
            (
                "3. w=2 peak without the reference, runs",
                ", ".join(_mib(p) for p in peaks),
                "info",
                "",
            )
        )
        spread = (max(peaks + watched) - min(peaks + watched)) / statistics.median(peaks + watched)
        rows.append(("3.   run-to-run spread of the peak (all w=2 runs)", f"{spread:.1%}", "info", ""))
    for entry in results["limits"]:
        label = f"4. L={entry['fraction']:.0%} of peak ({_mib(entry['limit_bytes'])})"
        for key, name in (("memfront_over_limit", "memfront peak/L"), ("maxrss_over_limit", "ru_maxrss/L")):
            value = entry[key]
            rows.append(
                (
                    f"{label}: {name}",
                    _fmt(value),
                    f"<= {GOAL_LIMIT}",
                    _verdict(None if value is None else value <= GOAL_LIMIT),
                )
            )
        rows.append((f"{label}: ru_maxrss/sampled RSS", _fmt(entry["maxrss_over_sampled_rss"]), "info", ""))
    return rows


def render(rows: list[tuple[str, str, str, str]]) -> str:
    """Formats the summary rows as an aligned text table."""
    header = ("figure", "value", "goal", "")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Runs the benchmark, prints the report and writes the JSON."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="tiny scale (16 images, imgsz 64, 1 epoch, 2 pairs)"
    )
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results" / "trial_bench.json")
    args = parser.parse_args(argv)
    scale = QUICK if args.quick else FULL
    command = shlex.join(getattr(sys, "orig_argv", [sys.executable, *sys.argv]))
    info = machine()

    def log(message: str) -> None:
        print(message, flush=True)

    log(f"command: {command}")
    log(
        f"machine: {info['nproc']} cores, {_mib(info['mem_total_bytes'])} RAM, kernel {info['kernel']}, "
        f"python {info['python']}, torch {info['torch']}, yolov5 {info['yolov5']}, "
        f"load {' '.join(f'{x:.2f}' for x in info['loadavg_start'])}"
    )
    if info["other_libtorch_processes_start"]:
        log(
            f"note: {info['other_libtorch_processes_start']} other process(es) map libtorch: shared library "
            "pages lower a trial's PSS below its RSS/VmHWM (affects 2 and 4)"
        )
    log(f"scale: {dataclasses.asdict(scale)}")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="memfront-bench-") as tmp:
        results = bench(scale, Path(tmp), log)
    info["loadavg_end"] = os.getloadavg()
    info["other_libtorch_processes_end"] = libtorch_holders({os.getpid()})
    rows = table(results)
    log("")
    log(render(rows))
    shared = max(results["other_libtorch_processes_per_run"], default=0)
    if shared:
        log(
            f"\nwarning: up to {shared} other process(es) mapped libtorch before the runs: the trial shares "
            "those library pages, so its PSS (what memfront measures) is below its RSS, and the RSS-based "
            "references (VmHWM, ru_maxrss in 2 and 4) overstate it. Rerun with no other torch process."
        )
    load_end = " ".join(f"{x:.2f}" for x in info["loadavg_end"])
    log(f"\ntotal {time.monotonic() - started:.0f} s; load at end {load_end}")
    if args.quick:
        log("(--quick: toy scale, start-up dominates; the goals are meant for the full run)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    out = {
        "command": command,
        "quick": args.quick,
        "scale": dataclasses.asdict(scale),
        "machine": info,
        "goals": {
            "overhead_ratio_max": GOAL_OVERHEAD,
            "peak_vs_vmhwm_workers0": GOAL_PEAK_W0,
            "peak_vs_reference_workers2": GOAL_PEAK_W2,
            "limit_overshoot_max": GOAL_LIMIT,
        },
        "summary": [dict(zip(("figure", "value", "goal", "verdict"), row, strict=True)) for row in rows],
        **results,
    }
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
