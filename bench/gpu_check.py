"""The GPU paths on a real GPU, in one prepared command (issue 15).

``python bench/gpu_check.py [OUT_DIR] [--minutes 8] [--rehearse]`` (OUT_DIR default ``$OUT``, else
``bench/results/gpu``) runs, on CUDA device 0, within ``--minutes`` in all, with a progress line
per step and every figure written as JSON into OUT_DIR:

1. two tiny real trials at the same batch and imgsz, AMP off and on: the allocator's peak reserved
   bytes, NVML's device memory for the trial's processes (or why it could not be matched), host PSS
   and seconds per epoch (``amp.json``);
2. one trial under a ``gpu_memory_limit`` below what it needs: its status must be ``memory_limit``
   (``gpu_limit.json``);
3. a 3-trial study with ``device: "0"`` end to end: ``run``, ``report --json``, ``export``
   (``study.json``).

Each step gets its time from what is left of the whole, and a step that fails or raises is written
down (its JSON holds the error) and the next one still runs; ``summary.json`` is written last,
whatever happened. Exit status 0 when every check passed, else 1.

It needs memfront's dependencies (yolov5, optuna, ...) importable; the machine it is meant for has
PyTorch but no network, so they travel as wheels (``bench/gpu_wheels.sh``). On a machine without
CUDA it says so in one line and exits 0. ``--rehearse`` runs the same steps there instead, on the
CPU at the tests' tiny scale, to check the script itself: the GPU-only checks are skipped and say so.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from search.measure import run_snippet  # noqa: E402

_STARTED = time.monotonic()
# The least time a step is given, and below which what is left of the run starts no further step.
_MIN_STEP_S = 20.0
# Sizes: a GPU run's, and a rehearsal's on the CPU (the tests' tiny scale).
_SCALES: dict[str, dict[str, Any]] = {
    "gpu": {
        "data": {"images": 64, "val_images": 16, "size": 320},
        "trial": {"batch": 32, "imgsz": 320, "epochs": 2, "workers": 2},
        "space": {"batch": [16, 32], "imgsz": [160, 320], "workers": [0, 2]},
    },
    "rehearsal": {
        "data": {"images": 16, "val_images": 16, "size": 64},
        "trial": {"batch": 8, "imgsz": 64, "epochs": 1, "workers": 0},
        "space": {"batch": [4, 8], "imgsz": [64, 96], "workers": [0, 1]},
    },
}


def _log(message: str) -> None:
    print(f"[{time.monotonic() - _STARTED:6.1f} s] {message}", flush=True)


def _cuda() -> dict[str, Any]:
    code = (
        "import torch\n"
        "ok = torch.cuda.is_available()\n"
        "result({'cuda': ok, 'torch': torch.__version__,"
        " 'name': torch.cuda.get_device_name(0) if ok else None,"
        " 'total_bytes': torch.cuda.get_device_properties(0).total_memory if ok else None})"
    )
    return dict(run_snippet(code, what="ask torch for CUDA"))


def _trial_figures(record: Any) -> dict[str, Any]:
    gpu = record.gpu
    return {
        "status": record.status,
        "error": record.error,
        "amp_used": record.used.get("amp"),
        "amp_reason": record.used.get("amp_reason"),
        "gpu_name": gpu.get("name"),
        "allocator_reserved_peak_bytes": gpu.get("allocator_reserved_peak_bytes"),
        "nvml_peak_bytes": gpu.get("nvml_peak_bytes"),
        "nvml": gpu.get("nvml"),
        "peak_gpu_bytes": record.peak_gpu_bytes,
        "peak_host_bytes": record.peak_host_bytes,
        "epoch_seconds": record.epoch_seconds,
        "wall_seconds": record.wall_seconds,
        "log_tail": record.log_tail[-5:] if record.status != "ok" else [],
    }


class _Check:
    """The run: its deadline, the folder its JSON goes to, and the failures found so far."""

    def __init__(self, out: Path, *, seconds: float, cuda: bool) -> None:
        self.out = out
        self.deadline = _STARTED + seconds
        self.cuda = cuda
        self.failures: list[str] = []

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def budget(self, cap: float, *, keep: float = 0.0) -> float:
        """A step's time limit: at most ``cap``, leaving ``keep`` seconds for the steps after it."""
        return max(_MIN_STEP_S, min(cap, self.left() - keep))

    def write(self, name: str, payload: Any) -> None:
        (self.out / f"{name}.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")

    def step(self, name: str, run: Callable[[], dict[str, Any]]) -> None:
        """Runs one step and writes its JSON; an exception is a failure of that step, not of the run."""
        if self.left() < _MIN_STEP_S:
            self.failures.append(f"{name}: not started, the time was up")
            self.write(name, {"skipped": "the time was up"})
            return
        try:
            payload = run()
        except Exception as error:
            self.failures.append(f"{name}: {type(error).__name__}: {error}")
            payload = {"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()}
            _log(f"  {name} raised {type(error).__name__}: {error}")
        self.write(name, payload)


def _amp(check: _Check, data: Path, knobs: dict[str, Any]) -> dict[str, Any]:
    from search import TrialConfig, TrialLimits, run_trial

    trials: dict[str, Any] = {}
    for index, amp in enumerate((False, True)):
        name = f"amp_{'on' if amp else 'off'}"
        _log(f"trial: batch {knobs['batch']}, imgsz {knobs['imgsz']}, AMP {'on' if amp else 'off'}")
        limit = check.budget(150, keep=(1 - index) * 90 + 200)
        record = run_trial(
            TrialConfig(data=str(data), amp=amp, **knobs), limits=TrialLimits(time_limit_s=limit)
        )
        trials[name] = _trial_figures(record)
        _log(f"  {record.status}: GPU peak {record.peak_gpu_bytes}, host {record.peak_host_bytes}")
        if record.status != "ok":
            check.failures.append(f"AMP {'on' if amp else 'off'}: {record.status} ({record.error})")
        elif check.cuda and record.peak_gpu_bytes is None:
            check.failures.append(f"AMP {'on' if amp else 'off'}: ok, but no GPU peak was measured")
    off, on = trials["amp_off"], trials["amp_on"]
    if off["allocator_reserved_peak_bytes"] and on["allocator_reserved_peak_bytes"]:
        trials["amp_on_over_off_reserved"] = (
            on["allocator_reserved_peak_bytes"] / off["allocator_reserved_peak_bytes"]
        )
    return trials


def _gpu_limit(check: _Check, data: Path, knobs: dict[str, Any]) -> dict[str, Any]:
    if not check.cuda:
        return {"skipped": "no CUDA device: a GPU limit has nothing to cap"}
    from search import TrialConfig, TrialLimits, run_trial

    limit = 256 * 1024**2
    _log(f"trial under gpu_memory_limit {limit / 1024**2:.0f} MiB (below what it needs)")
    record = run_trial(
        TrialConfig(data=str(data), amp=False, **knobs),
        limits=TrialLimits(gpu_memory_limit_bytes=limit, time_limit_s=check.budget(90, keep=180)),
    )
    _log(f"  status {record.status} (expected memory_limit)")
    if record.status != "memory_limit":
        check.failures.append(f"GPU limit: status {record.status} ({record.error})")
    return {"limit_bytes": limit, **_trial_figures(record)}


def _study(check: _Check, data: Path, folder: Path, space: dict[str, list[int]]) -> dict[str, Any]:
    study = folder / "gpu.yaml"
    # A bounded study: each training capped, no probes, no pre-flight skips, and a timeout from what
    # is left (it starts no training its timeout would cut).
    timeout = check.budget(240, keep=100)
    # On a GPU the study ranks GPU memory (its front, plot and hypervolume); the CPU rehearsal cannot.
    device = '"0"' if check.cuda else "cpu"
    memory = "peak_gpu" if check.cuda else "peak_host"
    study.write_text(
        f"name: gpu-check\ndata: {data}\nepochs: 1\nn_trials: 3\nmemory_limit: 16GiB\n"
        f"device: {device}\nobjectives: [map50_95, {memory}]\nsampler: random\nprobe_share: 0\n"
        "preflight_margin: null\n"
        f"timeout: {int(timeout)}s\ntrial_time_limit: 90s\nspace:\n  batch: {space['batch']}\n"
        f"  imgsz: {space['imgsz']}\n  cache: [none]\n  workers: {space['workers']}\n  amp: [false, true]\n"
    )
    steps: dict[str, Any] = {}
    for name, command in (
        ("run", ["run", str(study)]),
        ("report", ["report", str(study), "--json", "-"]),
        ("export", ["export", str(study), "--max-memory", "16GiB", "--format", "json"]),
    ):
        _log(f"study: memfront {command[0]}")
        # The run ends by its own timeout; the margin is its start-up and the data's checks.
        limit = timeout + 60 if name == "run" else check.budget(120)
        try:
            done = subprocess.run(
                [sys.executable, "-m", "search", *command], capture_output=True, text=True, timeout=limit
            )
        except subprocess.TimeoutExpired as error:
            steps[name] = {"exit": None, "error": f"still running after {error.timeout:.0f} s"}
            check.failures.append(f"study {name}: still running after {error.timeout:.0f} s")
            continue
        steps[name] = {"exit": done.returncode, "stderr_tail": done.stderr.splitlines()[-8:]}
        if done.returncode != 0:
            check.failures.append(f"study {name}: exit {done.returncode}")
        elif name != "run":
            try:
                steps[name]["json"] = json.loads(done.stdout)
            except json.JSONDecodeError as error:
                steps[name]["stdout_head"] = done.stdout[:2000]
                check.failures.append(f"study {name}: its --json output is not JSON ({error})")
                continue
            front_memory = steps[name]["json"].get("front_memory")
            if name == "report" and front_memory != ("gpu" if check.cuda else "host"):
                check.failures.append(f"study report: its front ranks {front_memory} memory")
    return steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out", nargs="?", type=Path, default=None, help="where the JSON goes")
    parser.add_argument("--minutes", type=float, default=8.0, help="the whole run's time (default 8)")
    parser.add_argument(
        "--rehearse", action="store_true", help="without CUDA: the same steps on the CPU, tiny"
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    out = args.out or Path(os.environ.get("OUT") or ROOT / "bench" / "results" / "gpu")
    cuda = _cuda()
    if not cuda["cuda"] and not args.rehearse:
        print(f"gpu_check: no CUDA device here (torch {cuda['torch']}): nothing to check", flush=True)
        return 0
    out.mkdir(parents=True, exist_ok=True)
    check = _Check(out, seconds=args.minutes * 60, cuda=bool(cuda["cuda"]))
    check.write("device", cuda)
    if check.cuda:
        _log(f"CUDA device 0: {cuda['name']}, {cuda['total_bytes'] / 1024**3:.1f} GiB; results in {out}")
    else:
        _log(
            f"rehearsal on the CPU (no CUDA; torch {cuda['torch']}): GPU-only checks skipped; "
            f"results in {out}"
        )
    scale = _SCALES["gpu" if check.cuda else "rehearsal"]
    try:
        from search.data._demo import make_demo_dataset

        with tempfile.TemporaryDirectory(prefix="memfront-gpu-check-") as tmp:
            data = make_demo_dataset(Path(tmp) / "data", seed=0, **scale["data"])
            knobs = {**scale["trial"], "device": "0" if check.cuda else "cpu"}
            check.step("amp", lambda: _amp(check, data, knobs))
            check.step("gpu_limit", lambda: _gpu_limit(check, data, knobs))
            check.step("study", lambda: _study(check, data, Path(tmp), scale["space"]))
    except Exception as error:  # the dataset, or the temporary folder: nothing else can run
        check.failures.append(f"setup: {type(error).__name__}: {error}")
    finally:
        seconds = time.monotonic() - _STARTED
        check.write("summary", {"failures": check.failures, "seconds": seconds, "cuda": check.cuda})
    _log("done: " + ("all checks passed" if not check.failures else "; ".join(check.failures)))
    return 1 if check.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
