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
from search.frameworks._base import MODEL_YAML_SUFFIXES, Framework, package_folder

__all__ = ["Ultralytics"]

_HYPS = Path(__file__).resolve().parents[1] / "hyps"
# ultralytics reads the scale from the name: yolo11n.yaml is yolo11.yaml at scale n.
_SCALED_NAME = re.compile(r"(\d+)([nslmx])(.+)?$")


@functools.cache
def _settings_keys() -> frozenset[str]:
    folder = package_folder("ultralytics")
    if folder is None:
        return frozenset()
    content = yaml.safe_load((folder / "cfg" / "default.yaml").read_text())
    return frozenset(content) if isinstance(content, dict) else frozenset()


class Ultralytics(Framework):
    """``ultralytics.YOLO(model).train(...)``: keyword settings, ``cache=ram|disk``."""

    name = "ultralytics"
    package = "ultralytics"
    default_model = "yolo11n.yaml"
    child_module = "search.child.ultralytics_train"
    import_line = "import ultralytics.models.yolo.detect"
    # Not the cache: with cache=ram its mosaic draws the other three images from the whole dataset,
    # otherwise from a buffer of recently loaded ones (ultralytics/data/augment.py, buffer_enabled),
    # so ram trains on other mosaics than none and disk.
    system_knobs = ("workers",)

    def shipped_model(self, name: str) -> str | None:
        folder = package_folder("ultralytics")
        if folder is None or Path(name).suffix not in MODEL_YAML_SUFFIXES:
            return None
        stem = Path(name).stem
        unified = _SCALED_NAME.sub(r"\1\3", stem) + ".yaml"
        found = any((folder / "cfg" / "models").rglob(unified)) or any(
            (folder / "cfg" / "models").rglob(name)
        )
        # Given by name: ultralytics finds its own yaml and keeps the scale the name carries.
        return name if found else None

    def owns_model_file(self, path: Path) -> bool:
        from search.frameworks._yolov5 import YOLOv5

        return path.is_file() and not YOLOv5().owns_model_file(path)

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

    def loader_workers(self, workers: int, batch: int, *, device: str, cpus: int) -> tuple[int, int]:
        if device in ("cpu", "mps"):
            return 0, 0  # its trainer sets workers=0 on these devices
        per_device = cpus // max(1, len(device.split(",")))
        # The validation loader asks for twice the workers (and twice the batch).
        return min(per_device, workers), min(per_device, 2 * workers)

    def upstream_command(self, options: dict[str, Any]) -> str:
        parts = ["yolo", "detect", "train", f"data={options['data']}", f"model={options['model']}"]
        for key in ("epochs", "batch", "imgsz", "workers", "device", "seed"):
            parts.append(f"{key}={options[key]}")
        parts.append(f"cache={options['cache'] if options['cache'] != 'none' else False}")
        parts.append(f"amp={bool(options['amp'])}")
        if options.get("hyp"):
            parts.append(f"cfg={options['hyp']}")
        return shlex.join(parts)
