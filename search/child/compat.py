"""yolov5 7.0.14 on today's torch/numpy/setuptools: every adaptation, in one place.

Imported only by the trial's child process (:mod:`search.child.trainer`). Nothing here touches the user's
files: fonts go to a folder memfront owns, and all patches live in the child's memory. The breaks
and their measurements are listed in ``shared/notes/yolov5-on-todays-stack.md``; each function below
says which one it answers.

* ``import yolov5`` needs ``pkg_resources``: ``setuptools<81`` in pyproject.
* numpy 2 removed ``np.trapz`` (validation crashes): :func:`patch_numpy`.
* torch >= 2.6 loads checkpoints ``weights_only``: :func:`child_environment`, child only.
* ultralytics (a yolov5 dependency) writes settings into the home and prints a banner to stdout on
  first import; matplotlib builds a font cache there: :func:`child_environment` (folders of the child's).
* ``check_font`` downloads Arial.ttf: :func:`prepare_config_dir` (a local font).
* no AMP switch, and ``check_amp`` may download: :func:`patch_amp`.
* ``train`` asks the Hugging Face hub about every weights path, through an import that
  huggingface_hub 0.25 removed: :func:`patch_hub`.
* mutable default ``Callbacks()``: the trainer passes a fresh one, one trial per process.
* ``parse_opt`` reads ``sys.argv``: :func:`isolate_argv`.
* ``select_device`` writes the device string into ``CUDA_VISIBLE_DEVICES``, re-reading an index as
  a physical GPU where the environment had narrowed them: :func:`narrow_visible_devices`.
* its validation workers live through the run and, under glibc's default allocator, may grow every
  epoch: :data:`ALLOCATOR_ENVIRONMENT`, in every child and in every exported command.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = [
    "ALLOCATOR_ENVIRONMENT",
    "MODEL_YAML_SUFFIXES",
    "allocator_environment",
    "child_environment",
    "child_process_environment",
    "decide_amp",
    "isolate_argv",
    "narrow_visible_devices",
    "patch_amp",
    "patch_hub",
    "patch_numpy",
    "prepare_config_dir",
    "yolov5_config_dir",
]

# yolov5 takes a model yaml (trains from scratch) as ``cfg`` whichever of these it ends with.
MODEL_YAML_SUFFIXES = (".yaml", ".yml")
# yolov5 asks for Arial.ttf, or Arial.Unicode.ttf for non-ASCII class names.
_FONT_NAMES = ("Arial.ttf", "Arial.Unicode.ttf")
_PKG_RESOURCES_WARNING = "ignore:pkg_resources is deprecated as an API:UserWarning"

ALLOCATOR_ENVIRONMENT = {"MALLOC_MMAP_THRESHOLD_": "1048576"}
"""glibc's malloc with a fixed mmap threshold (1 MiB), for every child memfront starts and in front
of every command export prints, so that the run a user starts is the run memfront measured.

By default glibc raises its mmap threshold each time a block it mmapped is freed, after which
image-sized buffers come from the heap and fragment it. yolov5's validation workers, which live
through the whole run, then grow in some runs by ~30 MiB each per validation pass, pass after pass,
and in others barely: on ``bench/probe_bench.py``'s config (cache none, 2 workers, 3000 + 750
images) a 4-epoch run's passes peaked at 1265 -> 1634 MiB, and one-epoch runs of one config spread
by up to 20%. A fixed threshold turns the dynamic one off: two 3-epoch runs peaked at 1335 and
1335 MiB, each pass within 2.2% of the last but for the main process's one-time copy, at the
default's training speed (first epoch's training 43.9 s against 43.7 s; a 64 KiB threshold was as
steady but 2.5x slower). A user's own value wins (:func:`allocator_environment`). Other C libraries
ignore the variable.
"""


def allocator_environment() -> dict[str, str]:
    """:data:`ALLOCATOR_ENVIRONMENT` as every child runs with it: the user's own values where set."""
    return {name: os.environ.get(name, value) for name, value in ALLOCATOR_ENVIRONMENT.items()}


def child_environment(settings_dir: Path) -> dict[str, str]:
    """Environment variables for any child process memfront starts (trial, probe, calibration run).

    Everything a third-party package would write into the user's home on first import goes into
    ``settings_dir``, a folder the child owns and memfront removes: ultralytics (imported by yolov5)
    creates its settings file and prints a banner to stdout when none exists; matplotlib builds its
    font cache; yolov5 keeps fonts in its config dir. So a first run on a fresh machine behaves like
    every later one, and nothing is written into the user's home.

    ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``: yolov5 checkpoints pickle whole objects; torch >= 2.6
    refuses them by default. Set for the child only: it loads the run's own checkpoints (and the
    ``.pt`` the user chose to fine-tune from, which yolov5 cannot load any other way).
    """
    return {
        **allocator_environment(),
        "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1",
        "YOLOV5_CONFIG_DIR": str(yolov5_config_dir(settings_dir)),
        "YOLO_CONFIG_DIR": str(settings_dir / "ultralytics"),
        "MPLCONFIGDIR": str(settings_dir / "matplotlib"),
        # Whatever else honours the XDG folders (caches of optional integrations) stays here too.
        "XDG_CONFIG_HOME": str(settings_dir / "config"),
        "XDG_CACHE_HOME": str(settings_dir / "cache"),
        "TORCH_HOME": str(settings_dir / "torch"),
        # Keep yolov5's optional integrations (W&B, Comet, ClearML, the hub) from reaching out.
        "WANDB_MODE": "disabled",
        "COMET_MODE": "disabled",
        "HF_HUB_OFFLINE": "1",
        "YOLO_OFFLINE": "1",
        # ultralytics' Platform callback streams metrics and uploads checkpoints whenever a key is
        # set, offline or not: a trial never does.
        "ULTRALYTICS_API_KEY": "",
        # yolov5 7.0.14 imports pkg_resources, which warns on every import: noise in every trial log.
        # Appended: a later filter wins, and the user's own filters are kept.
        "PYTHONWARNINGS": ",".join(filter(None, [os.environ.get("PYTHONWARNINGS"), _PKG_RESOURCES_WARNING])),
        "PYTHONUNBUFFERED": "1",
    }


# Set by pytest while memfront's own tests run: ultralytics would run in its test mode (integrations
# and its Platform callback off whatever the settings say), hiding what a user's trial does.
_NOT_INHERITED = ("PYTEST_CURRENT_TEST",)


def child_process_environment(settings_dir: Path) -> dict[str, str]:
    """The whole environment of a child memfront starts: this process's, with
    :func:`child_environment` on top and what a child must not inherit left out."""
    env = {**os.environ, **child_environment(settings_dir)}
    for name in _NOT_INHERITED:
        env.pop(name, None)
    return env


def yolov5_config_dir(settings_dir: Path) -> Path:
    """Where yolov5 looks for its fonts in a child given ``settings_dir``."""
    return settings_dir / "yolov5"


def prepare_config_dir(config_dir: Path) -> None:
    """Puts a TrueType font where yolov5's ``check_font`` looks, so it never downloads one.

    matplotlib (a dependency) ships DejaVuSans.ttf; yolov5 only needs some TrueType font to label
    plots.
    """
    import matplotlib

    source = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    config_dir.mkdir(parents=True, exist_ok=True)
    for name in _FONT_NAMES:
        target = config_dir / name
        if not target.exists():
            shutil.copyfile(source, target)


def patch_numpy() -> None:
    """numpy 2 removed ``np.trapz``, which yolov5's ``compute_ap`` calls during validation."""
    import numpy as np

    if not hasattr(np, "trapz"):
        np.trapz = np.trapezoid  # type: ignore[attr-defined]


def isolate_argv() -> None:
    """yolov5's ``parse_opt`` reads ``sys.argv``: give it nothing of the trial's own command line."""
    sys.argv = [sys.argv[0]]


def narrow_visible_devices(device: str) -> str:
    """Makes the trial's CUDA device the only one the child sees; returns the device for yolov5.

    yolov5's ``select_device`` sets ``CUDA_VISIBLE_DEVICES`` to the device it is given, re-reading an
    index as a physical GPU where the environment had narrowed them (``CUDA_VISIBLE_DEVICES=2,3``),
    and it cannot take the UUIDs such a list may hold. So the child narrows the variable itself
    (:func:`search.child._common.only_visible_device`) and gives yolov5 ``""``: the first visible
    device, with the variable left alone. ``cpu`` and ``mps`` are returned as they are, and a device
    that is not visible as given, for yolov5's own check to refuse.
    """
    from search.child._common import only_visible_device

    return "" if only_visible_device(device) else device.removeprefix("cuda:")


def decide_amp(*, requested: bool, cuda: bool) -> tuple[bool, str]:
    """Decides whether AMP really runs, and why.

    yolov5 wraps its forward pass in ``torch.cuda.amp.autocast`` and its scaler in
    ``torch.cuda.amp.GradScaler``: both are CUDA-only, so on a CPU trial AMP is off whatever was
    asked.

    Returns:
        (AMP on, the reason in words).
    """
    if not requested:
        return False, "off as requested"
    if not cuda:
        return False, "requested, but AMP needs a CUDA device (yolov5 autocasts with torch.cuda.amp)"
    return True, "on as requested (yolov5's own AMP check skipped)"


def patch_amp(train_module: ModuleType, enabled: bool) -> None:
    """Replaces ``yolov5.train.check_amp`` so that AMP is what :func:`decide_amp` chose.

    The original runs the model once in FP32 and once under autocast and, on CUDA, may download
    ``yolov5n.pt`` to compare: slow, online, and not the user's decision.
    """

    def check_amp(model: Any) -> bool:
        return enabled

    train_module.check_amp = check_amp  # type: ignore[attr-defined]


def patch_hub() -> None:
    """Replaces yolov5's ``attempt_download_from_hub`` wherever it was imported: memfront trains
    local weights only.

    yolov5 calls it for every ``weights`` value before anything else (``train``), and again in
    ``attempt_download`` for a checkpoint (fine-tuning, the final validation's ``attempt_load``); it
    needs the network, and its ``from huggingface_hub.utils._errors import ...`` fails with
    huggingface_hub 0.25 and later (yolov5 7.0.14 asks for <0.25, but an environment may hold a
    newer one), which would end every trial as failed. Call it after importing ``yolov5.train``.
    """

    def attempt_download_from_hub(repo_id: Any, hf_token: Any = None, revision: Any = None) -> None:
        return None

    for name, module in list(sys.modules.items()):
        if name.startswith("yolov5.") and hasattr(module, "attempt_download_from_hub"):
            setattr(module, "attempt_download_from_hub", attempt_download_from_hub)  # noqa: B010
