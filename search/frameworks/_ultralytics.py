"""The ``ultralytics`` package (YOLOv8, YOLO11, ...) as the search sees it.

Its child is :mod:`search.child.ultralytics_train`. Two of its rules change what a config costs:
on a CPU (or MPS) device its trainer runs with no dataloader worker whatever was asked, and on CUDA
it caps workers at the CPU count per device.
"""

from __future__ import annotations

import functools
import re
import shlex
from pathlib import Path
from typing import Any

import yaml

from search.errors import InputError
from search.frameworks._base import MODEL_YAML_SUFFIXES, Framework, check_device_text, package_folder

__all__ = ["Ultralytics"]

_HYPS = Path(__file__).resolve().parents[1] / "hyps"
# ultralytics reads the scale from the name: yolo11n.yaml is yolo11.yaml at scale n.
_SCALED_NAME = re.compile(r"(\d+)([nslmx])(.+)?$")
# What a trial sets itself (the knobs, the data, where the run goes): a settings yaml may not.
_RUN_KEYS = frozenset({
    "model", "data", "cfg", "task", "mode", "save_dir", "project", "name", "exist_ok", "resume", "time",
    "fraction", "epochs", "batch", "imgsz", "cache", "workers", "device", "amp", "seed", "val", "plots",
})  # fmt: skip
# The detection heads memfront's trainer (ultralytics' DetectionTrainer) trains.
_DETECT_HEADS = frozenset({"Detect", "v10Detect"})


@functools.cache
def _settings_keys() -> frozenset[str]:
    folder = package_folder("ultralytics")
    if folder is None:
        return frozenset()
    content = yaml.safe_load((folder / "cfg" / "default.yaml").read_text())
    return frozenset(content) if isinstance(content, dict) else frozenset()


def _detection_yaml(path: Path) -> bool:
    """Whether a model yaml's last layer is a detection head (not segment, pose, obb, classify...)."""
    try:
        content = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return False
    head = content.get("head") if isinstance(content, dict) else None
    last = head[-1] if isinstance(head, list) and head else None
    return isinstance(last, list) and len(last) > 2 and last[2] in _DETECT_HEADS


class Ultralytics(Framework):
    """``ultralytics.YOLO(model).train(...)``: keyword settings, ``cache=ram|disk``."""

    name = "ultralytics"
    package = "ultralytics"
    default_model = "yolo11n.yaml"
    child_module = "search.child.ultralytics_train"
    import_line = "import ultralytics.models.yolo.detect"
    skips_unknown_classes = True  # data/utils.py verify_image_label: a corrupt image, skipped
    # Not the cache: with cache=ram its mosaic draws the other three images from the whole dataset,
    # otherwise from a buffer of recently loaded ones (ultralytics/data/augment.py, buffer_enabled),
    # so ram trains on other mosaics than none and disk.
    system_knobs = ("workers",)
    label_cache_files = ("label-caches/*.cache",)  # ultralytics_compat.redirect_label_caches

    def shipped_model(self, name: str) -> str | None:
        folder = package_folder("ultralytics")
        if folder is None or Path(name).suffix not in MODEL_YAML_SUFFIXES:
            return None
        unified = _SCALED_NAME.sub(r"\1\3", Path(name).stem) + ".yaml"
        found = [*(folder / "cfg" / "models").rglob(unified), *(folder / "cfg" / "models").rglob(name)]
        # Given by name: ultralytics finds its own yaml and keeps the scale the name carries.
        return name if found and _detection_yaml(found[0]) else None

    def owns_model_file(self, path: Path) -> bool:
        from search.frameworks._yolov5 import YOLOv5

        return path.is_file() and not YOLOv5().owns_model_file(path)

    def resolve_model(self, model: str) -> str:
        resolved = super().resolve_model(model)
        path = Path(resolved)
        if path.suffix in MODEL_YAML_SUFFIXES and path.is_file() and not _detection_yaml(path):
            raise InputError(
                f"model {model}: not a detection model (memfront trains ultralytics' detect task)"
            )
        return resolved

    def check_device(self, device: str) -> None:
        check_device_text(device)
        if "," in device:
            # Several devices start ultralytics' DDP in new processes, outside the measured trainer.
            raise InputError(f"device {device}: an ultralytics trial trains on one device (use --devices)")

    def demo_hyp(self) -> Path:
        return _HYPS / "demo-ultralytics.yaml"

    def check_hyp(self, path: Path) -> None:
        try:
            content = yaml.safe_load(path.read_text())
        except yaml.YAMLError as error:
            raise InputError(f"{path}: not valid YAML: {str(error).splitlines()[0]}") from None
        if not isinstance(content, dict):
            raise InputError(f"{path}: ultralytics settings are a mapping (lr0, mosaic, ...)")
        known = _settings_keys()
        unknown = sorted(str(key) for key in content if known and key not in known)
        if unknown:
            raise InputError(f"{path}: not ultralytics train settings: {', '.join(unknown)}")
        run = sorted(str(key) for key in content if key in _RUN_KEYS)
        if run:
            raise InputError(f"{path}: set by the study or trial, not by a settings yaml: {', '.join(run)}")

    def loader_workers(self, workers: int, batch: int, *, device: str, cpus: int) -> tuple[int, int]:
        if device in ("cpu", "mps"):
            return 0, 0  # its trainer sets workers=0 on these devices
        # Its loaders give each visible GPU cpu_count // device_count workers; the trial's child makes
        # its one GPU the only one visible (search.child._common.only_visible_device). The validation
        # loader asks for twice the workers (and twice the batch). A loader of one batch starts none,
        # which only a dataset no larger than a batch meets: not modelled.
        return min(cpus, workers), min(cpus, 2 * workers)

    def upstream_command(self, options: dict[str, Any]) -> str:
        parts = ["yolo", "detect", "train", f"data={options['data']}", f"model={options['model']}"]
        for key in ("epochs", "batch", "imgsz", "workers", "device", "seed"):
            parts.append(f"{key}={options[key]}")
        parts.append(f"cache={options['cache'] if options['cache'] != 'none' else False}")
        parts.append(f"amp={bool(options['amp'])}")
        if options.get("hyp"):
            parts.append(f"cfg={options['hyp']}")
        parts.append(f"plots={bool(options.get('plots'))}")  # off as every trial measured it
        return shlex.join(parts)
