"""A short calibration of the memory model on this machine, cached per machine, model and device.

A handful of tiny real trials on a generated dataset, chosen so that each term of
:mod:`search.model._predict` varies on its own: batch x imgsz for activations, a RAM cache large enough to
stand out of the noise, and dataloader workers with and without it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import json
import os
import platform
import stat
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from search.errors import InputError
from search.frameworks import DEFAULT_FRAMEWORK, get_framework, resolve_framework
from search.model._predict import DatasetStats, MemoryModel, features
from search.trial._config import TrialConfig, TrialLimits

__all__ = [
    "CALIBRATION_RUNS",
    "Calibration",
    "cache_dir",
    "calibrate",
    "calibration_key",
    "load_calibration",
    "write_cache",
]

# (batch, imgsz, cache, workers, train images): each term varies against the others.
CALIBRATION_RUNS: tuple[tuple[int, int, str, int, int], ...] = (
    (4, 64, "none", 0, 64),
    (16, 160, "none", 0, 64),
    (16, 320, "none", 0, 64),
    (8, 320, "ram", 0, 320),
    (8, 160, "none", 2, 64),
    (8, 320, "ram", 2, 320),
)
# For tests: seconds, not minutes.
TINY_RUNS: tuple[tuple[int, int, str, int, int], ...] = ((4, 64, "none", 0, 16), (8, 96, "ram", 1, 16))


def cache_dir() -> Path:
    """Where memfront caches what it measured of this machine (calibrations, the framework's footprint).

    ``$MEMFRONT_CACHE_DIR``, else ``var/cache/memfront`` in the Python environment memfront runs in
    (``sys.prefix``: a virtual environment's folder): each figure is of the software installed
    there, and nothing is written into the user's home. Where that environment is not writable (a
    system-wide install), a folder of this user's in the temporary directory.
    """
    if os.environ.get("MEMFRONT_CACHE_DIR"):
        return Path(os.environ["MEMFRONT_CACHE_DIR"])
    in_environment = Path(sys.prefix) / "var" / "cache" / "memfront"
    existing = next(p for p in (in_environment, *in_environment.parents) if p.exists())
    if os.access(existing, os.W_OK | os.X_OK):
        return in_environment
    return _private_temp_dir()


@functools.cache
def _private_temp_dir() -> Path:
    """This user's cache folder in the temporary directory: made private, and not used if another
    user made it first (whose files could be planted): then a new one of this process's own."""
    folder = Path(tempfile.gettempdir()) / f"memfront-cache-{os.getuid()}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        info = folder.lstat()
        if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o022:
            return folder
    except OSError:
        pass
    return Path(tempfile.mkdtemp(prefix="memfront-cache-"))


def write_cache(path: Path, text: str) -> bool:
    """Writes a cache file whole or not at all (a reader never sees half of it: another process may
    write the same figure at once). False if it cannot be written: the figure is measured again the
    next time, nothing fails."""
    temporary: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(descriptor, "w") as handle:
            handle.write(text)
        os.chmod(temporary, 0o644)  # mkstemp's are the owner's only; a figure is no secret
        os.replace(temporary, path)
    except OSError:
        if temporary is not None:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
        return False
    return True


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "none"


def calibration_key(model: str, device: str, *, framework: str = DEFAULT_FRAMEWORK) -> str:
    """Identifies what a calibration is valid for: this machine, the framework and its software, the
    model, the device (each framework keeps its own calibrations: its memory behaves its own way)."""
    identity: dict[str, Any] = {
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "ram": psutil.virtual_memory().total,
        **get_framework(framework).versions(),
        "model": Path(model).name,
        "device": device,
    }
    prefix = ""
    if framework != DEFAULT_FRAMEWORK:  # yolov5's keys are those of calibrations made before frameworks
        identity["framework"] = framework
        prefix = f"{framework}-"
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    return f"{prefix}{Path(model).stem}-{device}-{digest}"


class Calibration:
    """Measured rows (features, peak bytes) and the model fitted on them."""

    def __init__(self, *, rows: list[tuple[dict[str, float], float]], model: MemoryModel) -> None:
        self.rows = rows
        self.model = model

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "rows": [{"features": f, "peak_host_bytes": y} for f, y in self.rows],
            "model": self.model.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        """Inverse of :meth:`to_dict`."""
        rows = [(row["features"], float(row["peak_host_bytes"])) for row in data["rows"]]
        return cls(rows=rows, model=MemoryModel.from_dict(data["model"]))


def load_calibration(model: str, device: str, *, framework: str | None = None) -> Calibration | None:
    """The cached calibration for this machine, framework (default: the model's), model and device."""
    framework, _ = resolve_framework(framework, model)
    path = cache_dir() / "calibration" / f"{calibration_key(model, device, framework=framework)}.json"
    if not path.is_file():
        return None
    try:
        return Calibration.from_dict(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError):
        return None  # a damaged cache is recomputed, not trusted


def calibrate(
    *,
    model: str | None = None,
    device: str = "cpu",
    framework: str | None = None,
    runs: tuple[tuple[int, int, str, int, int], ...] = CALIBRATION_RUNS,
    force: bool = False,
    on_run: Callable[[int, int, dict[str, Any]], None] | None = None,
) -> Calibration:
    """Returns the cached calibration, or measures one with real tiny trials and caches it.

    Args:
        model: Model yaml or checkpoint the calibration is for (default: the framework's).
        device: Device the calibration is for.
        framework: The framework that trains (default: the model's).
        runs: (batch, imgsz, cache, workers, train images) of each calibration trial.
        force: Measure again even if a calibration is cached.
        on_run: Called before each run with (index, count, config).
    """
    framework, model = resolve_framework(framework, model)
    if not force and (cached := load_calibration(model, device, framework=framework)) is not None:
        return cached
    from search.data._dataset import load_dataset
    from search.data._demo import make_demo_dataset
    from search.trial._supervisor import run_trial

    rows: list[tuple[dict[str, float], float]] = []
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="memfront-calibration-") as tmp:
        most = max(run[4] for run in runs)
        data_yaml = make_demo_dataset(Path(tmp) / "data", images=most, val_images=16, size=320, seed=7)
        stats = DatasetStats.read(load_dataset(data_yaml), cache="off")  # a temporary folder
        for index, (batch, imgsz, cache, workers, images) in enumerate(runs):
            knobs: dict[str, Any] = {"batch": batch, "imgsz": imgsz, "cache": cache, "workers": workers}
            if on_run:
                on_run(index, len(runs), knobs)
            record = run_trial(
                TrialConfig(
                    data=str(data_yaml),
                    framework=framework,
                    model=model,
                    device=device,
                    epochs=1,
                    train_images=images,
                    **knobs,
                ),
                limits=TrialLimits(time_limit_s=600),
            )
            if record.status == "interrupted":
                raise KeyboardInterrupt  # the trial took the Ctrl-C; nothing is cached
            if record.status != "ok":
                failures.append(record.error_line() or record.status)
            if record.status == "ok" and record.peak_host_bytes:
                rows.append(
                    (
                        features(
                            stats=stats, train_images=images, framework=framework, device=device, **knobs
                        ),
                        float(record.peak_host_bytes),
                    )
                )
    if not rows:
        raise InputError(
            f"every calibration run failed ({failures[0] if failures else 'no run'}): nothing to fit"
        )
    calibration = Calibration(rows=rows, model=MemoryModel.prior().fit(rows))
    path = cache_dir() / "calibration" / f"{calibration_key(model, device, framework=framework)}.json"
    write_cache(path, json.dumps(calibration.to_dict(), indent=2) + "\n")
    return calibration
