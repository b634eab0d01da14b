"""The GPU paths on a real GPU, in one prepared command (issue 15).

``python bench/gpu_check.py [OUT_DIR]`` (default ``$OUT``, else ``bench/results/gpu``) runs, on
CUDA device 0, with a progress line per step and every figure written as JSON into OUT_DIR:

1. two tiny real trials at the same batch and imgsz, AMP off and on: the allocator's peak reserved
   bytes, NVML's device memory for the trial's processes (or why it could not be matched), host PSS
   and seconds per epoch;
2. one trial under a ``gpu_memory_limit`` below what it needs: its status must be ``memory_limit``;
3. a 3-trial study with ``device: "0"`` end to end: ``run``, ``report --json``, ``export``.

It needs memfront's dependencies (yolov5, optuna, ...) importable; the machine it is meant for has
PyTorch but no network, so they travel as wheels (``bench/gpu_wheels.sh``). On a machine without
CUDA it says so in one line and exits 0.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from search.measure import run_snippet  # noqa: E402

_STARTED = time.monotonic()


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


def _write(out: Path, name: str, payload: Any) -> None:
    (out / f"{name}.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "search", *args], capture_output=True, text=True, timeout=300
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0] if args else os.environ.get("OUT") or ROOT / "bench" / "results" / "gpu")
    cuda = _cuda()
    if not cuda["cuda"]:
        print(f"gpu_check: no CUDA device here (torch {cuda['torch']}): nothing to check", flush=True)
        return 0
    out.mkdir(parents=True, exist_ok=True)
    _write(out, "device", cuda)
    _log(f"CUDA device 0: {cuda['name']}, {cuda['total_bytes'] / 1024**3:.1f} GiB; results in {out}")

    from search import TrialConfig, TrialLimits, run_trial
    from search.data import make_demo_dataset

    failures = []
    with tempfile.TemporaryDirectory(prefix="memfront-gpu-check-") as tmp:
        data = make_demo_dataset(Path(tmp) / "data", images=64, val_images=16, size=320, seed=0)
        knobs = {"batch": 32, "imgsz": 320, "epochs": 2, "device": "0", "workers": 2}
        trials = {}
        for amp in (False, True):
            _log(f"trial: batch 32, imgsz 320, AMP {'on' if amp else 'off'}")
            record = run_trial(
                TrialConfig(data=str(data), amp=amp, **knobs), limits=TrialLimits(time_limit_s=180)
            )
            trials[f"amp_{'on' if amp else 'off'}"] = _trial_figures(record)
            _log(f"  {record.status}: GPU peak {record.peak_gpu_bytes}, host {record.peak_host_bytes}")
            if record.status != "ok":
                failures.append(f"AMP {amp}: {record.status}")
        off, on = trials["amp_off"], trials["amp_on"]
        if off["allocator_reserved_peak_bytes"] and on["allocator_reserved_peak_bytes"]:
            trials["amp_on_over_off_reserved"] = (
                on["allocator_reserved_peak_bytes"] / off["allocator_reserved_peak_bytes"]
            )
        _write(out, "amp", trials)

        limit = 256 * 1024**2
        _log(f"trial under gpu_memory_limit {limit / 1024**2:.0f} MiB (below what it needs)")
        record = run_trial(
            TrialConfig(data=str(data), amp=False, **knobs),
            limits=TrialLimits(gpu_memory_limit_bytes=limit, time_limit_s=180),
        )
        limited = _trial_figures(record)
        _write(out, "gpu_limit", {"limit_bytes": limit, **limited})
        _log(f"  status {record.status} (expected memory_limit)")
        if record.status != "memory_limit":
            failures.append(f"GPU limit: status {record.status}")

        study = Path(tmp) / "gpu.yaml"
        study.write_text(
            f"name: gpu-check\ndata: {data}\nepochs: 1\nn_trials: 3\nmemory_limit: 16GiB\n"
            'device: "0"\nsampler: random\nspace:\n  batch: [16, 32]\n  imgsz: [160, 320]\n'
            "  cache: [none]\n  workers: [0, 2]\n  amp: [false, true]\n"
        )
        steps = {}
        for name, command in (
            ("run", ["run", str(study)]),
            ("report", ["report", str(study), "--json", "-"]),
            ("export", ["export", str(study), "--max-memory", "16GiB", "--format", "json"]),
        ):
            _log(f"study: memfront {' '.join(command[:1])}")
            done = _cli(*command)
            steps[name] = {"exit": done.returncode, "stderr_tail": done.stderr.splitlines()[-8:]}
            if name != "run" and done.returncode == 0:
                steps[name]["json"] = json.loads(done.stdout)
            if done.returncode != 0:
                failures.append(f"study {name}: exit {done.returncode}")
        _write(out, "study", steps)
    _write(out, "summary", {"failures": failures, "seconds": time.monotonic() - _STARTED})
    _log("done: " + ("all checks passed" if not failures else "; ".join(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
