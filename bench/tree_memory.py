"""Each process's memory through one probe or one full run: where a probe and a real run differ.

The supervisor reports the tree's PSS; this says whose it is. Around one ``run_probe`` or
``run_trial`` (the bench's config: batch 16, imgsz 128, ``hyp: demo``, on the probe bench's demo
dataset), a thread reads ``/proc/PID/smaps_rollup`` of every descendant every 0.5 s (PSS, private
and shared pages). Printed: each process's life and private memory (first / max / last), the tree's
largest summed PSS and each process's part in it, and the sums over time; the JSON (``--out``) holds
every sample and the record's timeline. The figures of the README's *Re-measured per process*
paragraph were taken this way::

    .venv/bin/python bench/tree_memory.py --mode probe [--train-min-batches 40]
    .venv/bin/python bench/tree_memory.py --mode full --epochs 1     # and --epochs 3
    MALLOC_ARENA_MAX=1 .venv/bin/python bench/tree_memory.py --mode full --epochs 3

Linux only. Like the probe bench, this process never imports torch or yolov5.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from search.data._demo import make_demo_dataset  # noqa: E402
from search.measure._procfs import _kib_fields as kib_fields  # noqa: E402
from search.measure._procfs import _read as read_proc_file  # noqa: E402
from search.probe import run_probe  # noqa: E402
from search.probe._run import ProbeBounds  # noqa: E402
from search.trial._config import TrialConfig  # noqa: E402
from search.trial._supervisor import run_trial  # noqa: E402

_PERIOD_S = 0.5


_FIELDS = (b"Pss", b"Private_Dirty", b"Private_Clean", b"Shared_Dirty", b"Shared_Clean")


def rollup(pid: int) -> dict[bytes, int] | None:
    """A process's PSS, private and shared fields of ``smaps_rollup``, in bytes; None once gone."""
    data = read_proc_file(f"/proc/{pid}/smaps_rollup")
    return None if data is None else kib_fields(data, _FIELDS)


class ProcessSampler(threading.Thread):
    """Samples every descendant of this process until :meth:`stop`."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: list[dict[str, Any]] = []
        self._stopped = threading.Event()

    def run(self) -> None:
        me = psutil.Process()
        while not self._stopped.is_set():
            now = time.time()
            for child in me.children(recursive=True):
                fields = rollup(child.pid)
                if fields is None:
                    continue
                private = fields.get(b"Private_Dirty", 0) + fields.get(b"Private_Clean", 0)
                shared = fields.get(b"Shared_Dirty", 0) + fields.get(b"Shared_Clean", 0)
                self.samples.append({
                    "t": now, "pid": child.pid, "pss_kib": fields.get(b"Pss", 0) // 1024,
                    "private_kib": private // 1024, "shared_kib": shared // 1024,
                })  # fmt: skip
            self._stopped.wait(_PERIOD_S)

    def stop(self) -> None:
        self._stopped.set()
        self.join()


def report(samples: list[dict[str, Any]], start: float) -> str:
    """The per-process summary, the tree's largest sum and its parts, and the sums every ~6 s."""
    by_pid: dict[int, list[dict[str, Any]]] = defaultdict(list)
    by_time: dict[float, list[dict[str, Any]]] = defaultdict(list)
    for sample in samples:
        by_pid[sample["pid"]].append(sample)
        by_time[sample["t"]].append(sample)
    lines = ["pid      life s    private MiB first / max / last"]
    for pid, own in by_pid.items():
        private = [s["private_kib"] // 1024 for s in own]
        life = f"{own[0]['t'] - start:.0f}-{own[-1]['t'] - start:.0f}"
        lines.append(f"{pid:<8} {life:<9} {private[0]} / {max(private)} / {private[-1]}")
    if by_time:
        peak_t = max(by_time, key=lambda t: sum(s["pss_kib"] for s in by_time[t]))
        total = sum(s["pss_kib"] for s in by_time[peak_t]) // 1024
        lines.append(f"tree's largest PSS {total} MiB at {peak_t - start:.0f} s:")
        lines += [
            f"  {s['pid']}: PSS {s['pss_kib'] // 1024}, private {s['private_kib'] // 1024}, "
            f"shared {s['shared_kib'] // 1024} MiB"
            for s in by_time[peak_t]
        ]
    last = float("-inf")
    for t in sorted(by_time):
        if t - last >= 6:
            last = t
            now = by_time[t]
            parts = " ".join(f"{s['pid']}:{s['pss_kib'] // 1024}/{s['private_kib'] // 1024}" for s in now)
            lines.append(f"{t - start:5.0f} s  PSS {sum(s['pss_kib'] for s in now) // 1024:5d}  {parts}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["probe", "full"], required=True)
    parser.add_argument("--epochs", type=int, default=1, help="epochs of a full run")
    parser.add_argument("--cache", choices=["none", "ram", "disk"], default="none")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--train-min-batches", type=int, default=ProbeBounds().train_min_batches)
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--data-dir", type=Path, default=ROOT / "bench" / "data")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "tree_memory.json")
    args = parser.parse_args()

    folder = args.data_dir / f"shapes-{args.images}-256"
    if not (folder / "data.yaml").is_file():
        make_demo_dataset(folder, images=args.images, size=256, seed=0)
    config = TrialConfig(
        data=str(folder / "data.yaml"), batch=16, imgsz=128, cache=args.cache, workers=args.workers,
        hyp="demo", epochs=args.epochs,
    )  # type: ignore[arg-type]  # fmt: skip
    sampler = ProcessSampler()
    start = time.time()
    sampler.start()
    if args.mode == "probe":
        probe = run_probe(config, bounds=ProbeBounds(train_min_batches=args.train_min_batches))
        result: dict[str, Any] = {
            "status": probe.status, "peak_host_bytes": probe.peak_host_bytes, "train": probe.train,
        }  # fmt: skip
        timeline: list[dict[str, Any]] = []
    else:
        record = run_trial(config)
        result = {"status": record.status, "peak_host_bytes": record.peak_host_bytes}
        timeline = record.timeline
    sampler.stop()
    peak = result["peak_host_bytes"]
    print(f"{args.mode}: {result['status']}, supervisor's peak {peak / 2**20 if peak else 0:.0f} MiB")
    print(report(sampler.samples, start))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    data = {"start": start, "result": result, "timeline": timeline, "samples": sampler.samples}
    args.out.write_text(json.dumps(data) + "\n")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
