"""ultralytics 8.4 inside a measured trial: every adaptation, in one place.

Imported only by :mod:`search.child.ultralytics_train`, in the trial's child. Nothing here touches the
user's files or the network; all patches live in the child's memory.

* Settings: ``YOLO_CONFIG_DIR`` (set by :func:`search.child.compat.child_environment`) puts the
  settings file, and the banner ultralytics prints when it has none, in the trial's own folder;
  :func:`quiet_settings` turns its usage analytics, logger integrations and Platform key off
  (``ULTRALYTICS_API_KEY`` is emptied for the child too). Its runs/weights/datasets folders are
  module constants fixed at import: a trial never uses them (absolute data lists and project).
* On a CPU its ``select_device`` sets torch's threads to ``min(8, cpus - 1)``: :func:`keep_threads`
  makes it keep the trial's ``threads`` when the study sets them (jobs sharing a machine).
* ``check_font`` downloads Arial.ttf into the config folder: :func:`prepare_fonts` puts a local one there.
* ``check_amp`` runs a downloaded ``yolo26n.pt`` on CUDA to decide AMP: :func:`patch_amp`.
* Its datasets write a ``labels.cache`` beside the user's label folders: :func:`redirect_label_caches`
  keeps them in the trial's folder, one per split (yolov5, given image lists, does the same by itself).
* On a CUDA out-of-memory error in the first epoch, its trainer halves the batch and retries (up to
  3 times): a measured trial must end as over the limit instead, see :func:`no_oom_retries`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import ModuleType
from typing import Any

from search.child.compat import prepare_config_dir

__all__ = [
    "decide_amp",
    "keep_threads",
    "no_oom_retries",
    "patch_amp",
    "prepare_fonts",
    "quiet_settings",
    "redirect_label_caches",
    "trial_device",
]

_OFF = ("sync", "clearml", "comet", "dvc", "hub", "mlflow", "neptune", "raytune", "tensorboard", "wandb")
_EMPTY = ("api_key", "openai_api_key")


def quiet_settings(folder: Path) -> None:
    """No analytics, no logger integrations; the settings' folders inside ``folder``."""
    from ultralytics.utils import SETTINGS

    wanted: dict[str, Any] = {key: False for key in _OFF if key in SETTINGS}
    wanted.update({key: "" for key in _EMPTY if key in SETTINGS})
    for key, sub in (("runs_dir", "runs"), ("weights_dir", "weights"), ("datasets_dir", "datasets")):
        if key in SETTINGS:
            wanted[key] = str(folder / sub)
    SETTINGS.update(wanted)


def prepare_fonts() -> None:
    """A local TrueType font where ``check_font`` looks first, so it never downloads one."""
    from ultralytics.utils import USER_CONFIG_DIR

    prepare_config_dir(Path(USER_CONFIG_DIR))


def trial_device(requested: str, *, narrowed: bool, cuda: bool) -> tuple[str, str]:
    """The trial's torch device, and the device to give ultralytics' trainer.

    Args:
        requested: The study's device (``cpu``, ``1``, ``cuda:1``).
        narrowed: Whether the child made that GPU the only visible one
            (:func:`search.child._common.only_visible_device`): it is then index 0.
        cuda: Whether torch has CUDA here.

    Returns:
        (``cpu``, ``mps`` or ``cuda:N``, the device setting for ultralytics). Without CUDA, a GPU request goes
        to ultralytics as it was written, for its own check to refuse.
    """
    if requested in ("cpu", "mps"):
        return requested, requested
    if not cuda:
        return "cpu", requested
    index = "0" if narrowed else requested.removeprefix("cuda:").split(",")[0]
    return f"cuda:{index}", index


def decide_amp(*, requested: bool, cuda: bool) -> tuple[bool, str]:
    """Decides whether AMP really runs, and why: ultralytics autocasts on CUDA only.

    Returns:
        (AMP on, the reason in words).
    """
    if not requested:
        return False, "off as requested"
    if not cuda:
        return False, "requested, but AMP needs a CUDA device (ultralytics autocasts on CUDA only)"
    return True, "on as requested (ultralytics' own AMP check skipped)"


def patch_amp(trainer_module: ModuleType, enabled: bool) -> None:
    """Replaces ``ultralytics.engine.trainer.check_amp`` so that AMP is what :func:`decide_amp` chose."""

    def check_amp(model: Any, *args: Any, **kwargs: Any) -> bool:
        return enabled

    trainer_module.check_amp = check_amp  # type: ignore[attr-defined]


def redirect_label_caches(folder: Path) -> None:
    """Keeps the ``*.cache`` label files ultralytics reads and writes in ``folder``.

    ultralytics names a cache after the label folder it stands for, so a dataset whose training and
    validation labels share one folder (image lists over one ``images/``) would keep one cache for
    both, each split overwriting the other's and scanning again in every trial. Here a cache is
    named after the label folder and the split's image source (the trial's ``train.txt`` or
    ``val.txt``), which ultralytics' dataset sets before it loads its labels.
    """
    from ultralytics.data import dataset

    load, save = dataset.load_dataset_cache_file, dataset.save_dataset_cache_file
    get_labels = dataset.YOLODataset.get_labels
    folder.mkdir(parents=True, exist_ok=True)
    loading = {"source": ""}

    def moved(path: Path) -> Path:
        identity = f"{Path(path).resolve()}\0{loading['source']}"
        digest = hashlib.sha256(identity.encode()).hexdigest()[:12]
        return folder / f"{digest}-{Path(path).name}"

    def load_dataset_cache_file(path: Path) -> dict[str, Any]:
        return load(moved(path))

    def save_dataset_cache_file(prefix: str, path: Path, x: dict[str, Any], version: str) -> None:
        save(prefix, moved(path), x, version)

    def get_labels_of_source(self: Any) -> Any:
        loading["source"] = _image_source(self.img_path)
        try:
            return get_labels(self)
        finally:
            loading["source"] = ""

    dataset.load_dataset_cache_file = load_dataset_cache_file
    dataset.save_dataset_cache_file = save_dataset_cache_file
    dataset.YOLODataset.get_labels = get_labels_of_source  # type: ignore[method-assign]


def _image_source(img_path: str | list[str]) -> str:
    """A split's image source by name: a list file's name (its folder is the trial's, new each time)."""
    sources = [img_path] if isinstance(img_path, str) else sorted(img_path)
    return "\n".join(Path(source).name for source in sources)


def keep_threads(threads: int) -> None:
    """Makes ultralytics' ``select_device`` set ``threads`` torch threads on a CPU, not its own count."""
    from ultralytics.utils import torch_utils

    torch_utils.NUM_THREADS = threads


def no_oom_retries(trainer: Any) -> None:
    """Called at every epoch start: the trainer's OOM retry counter reads as spent.

    Its loop re-raises a CUDA out-of-memory error once ``_oom_retries`` reaches 3; it resets the
    counter before the first epoch and after it, so this runs from ``on_train_epoch_start``.
    """
    trainer._oom_retries = 3
