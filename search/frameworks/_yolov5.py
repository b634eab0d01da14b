"""yolov5 7.0.14 (the PyPI package) as the search sees it; its child is :mod:`search.child.yolov5_train`."""

from __future__ import annotations

import shlex
import zipfile
from pathlib import Path
from typing import Any

import yaml

from search.errors import InputError
from search.frameworks._base import MODEL_YAML_SUFFIXES, Framework, check_device_text, package_folder

__all__ = ["YOLOv5"]

_HYPS = Path(__file__).resolve().parents[1] / "hyps"


def pickled_modules(checkpoint: Path) -> bytes:
    """The pickle of a torch checkpoint (a zip), whose global names say which code saved it."""
    try:
        with zipfile.ZipFile(checkpoint) as archive:
            name = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
            return archive.read(name) if name else b""
    except (OSError, zipfile.BadZipFile):
        return b""


class YOLOv5(Framework):
    """yolov5's ``train.py``: ``cfg`` + ``weights``, ``hyp`` yamls, ``--cache ram|disk``."""

    name = "yolov5"
    package = "yolov5"
    default_model = "yolov5n.yaml"
    child_module = "search.child.yolov5_train"
    import_line = "import yolov5.train"
    # utils/dataloaders.py: a list file's cache is the list's path with the suffix .cache.
    label_cache_files = ("train.cache", "val.cache")

    def shipped_model(self, name: str) -> str | None:
        folder = package_folder("yolov5")
        shipped = None if folder is None else folder / "models" / name
        return str(shipped) if shipped is not None and shipped.is_file() else None

    def owns_model_file(self, path: Path) -> bool:
        if path.suffix in MODEL_YAML_SUFFIXES:
            try:
                content = yaml.safe_load(path.read_text())
            except (OSError, yaml.YAMLError):
                return False
            # yolov5's heads are anchor-based; ultralytics' (YOLOv5u included) are anchor-free.
            return isinstance(content, dict) and "anchors" in content
        # A global of ultralytics' own modules (a yolov5 checkpoint may name its git remote,
        # github.com/ultralytics/yolov5, among its strings).
        return b"ultralytics.nn" not in pickled_modules(path)

    def demo_hyp(self) -> Path:
        return _HYPS / "demo.yaml"

    def check_device(self, device: str) -> None:
        check_device_text(device)
        if "," in device:
            # yolov5's DataParallel spreads the batch over the devices, while a trial's GPU memory
            # is measured and capped on one.
            raise InputError(f"device {device}: a yolov5 trial trains on one device (use --devices)")

    def check_hyp(self, path: Path) -> None:
        try:
            content = yaml.safe_load(path.read_text())
        except yaml.YAMLError as error:
            raise InputError(f"{path}: not valid YAML: {str(error).splitlines()[0]}") from None
        if not isinstance(content, dict) or "lr0" not in content:
            raise InputError(f"{path}: a yolov5 hyp yaml maps all of yolov5's keys (lr0, obj, ...)")

    def loader_workers(self, workers: int, batch: int, *, device: str, cpus: int) -> tuple[int, int]:
        # create_dataloader takes min(cpu_count, batch if batch > 1 else 0, workers); validation asks
        # for twice the batch and twice the workers.
        train = min(cpus, batch if batch > 1 else 0, workers)
        val = min(cpus, 2 * batch if 2 * batch > 1 else 0, 2 * workers)
        return train, val

    def upstream_command(self, options: dict[str, Any]) -> str:
        model = str(options["model"])
        parts = ["yolov5", "train", "--data", str(options["data"])]
        from_scratch = model.endswith(MODEL_YAML_SUFFIXES)
        parts += ["--cfg", model, "--weights", ""] if from_scratch else ["--weights", model]
        parts += ["--epochs", str(options["epochs"]), "--batch-size", str(options["batch"])]
        parts += ["--img", str(options["imgsz"]), "--workers", str(options["workers"])]
        parts += ["--device", str(options["device"]), "--seed", str(options["seed"])]
        if options["cache"] != "none":
            parts += ["--cache", str(options["cache"])]
        if options.get("hyp"):
            parts += ["--hyp", str(options["hyp"])]
        if not options.get("plots"):
            parts.append("--noplots")  # as every trial measured it
        return shlex.join(parts)
