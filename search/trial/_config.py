"""The configuration of one trial, validated before anything runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from search.errors import InputError
from search.frameworks import DEFAULT_FRAMEWORK, get_framework, with_framework_and_model

__all__ = [
    "CACHE_MODES",
    "TrialConfig",
    "TrialLimits",
    "resolve_hyp",
    "resolve_model",
    "validation_message",
]

CACHE_MODES = ("none", "ram", "disk")


class TrialConfig(BaseModel):
    """What one trial trains: the memory knobs and the run settings.

    The five knobs the search varies are ``batch``, ``imgsz``, ``cache``, ``workers`` and ``amp``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    data: str = Field(description="YOLO data yaml")
    framework: str = Field(DEFAULT_FRAMEWORK, description="yolov5 or ultralytics; default: the model's")
    model: str = Field("yolov5n.yaml", description="model yaml (from scratch) or local .pt")
    batch: int = Field(16, gt=0)
    imgsz: int = Field(640, gt=0)
    cache: Literal["none", "ram", "disk"] = "none"
    workers: int = Field(0, ge=0)
    amp: bool = False
    epochs: int = Field(1, gt=0)
    device: str = "cpu"
    seed: int = 0
    train_images: int | None = Field(None, gt=0)
    train_fraction: float | None = Field(None, gt=0, le=1)
    hyp: str | None = Field(None, description="hyperparameter yaml, or 'demo'; default the framework's own")
    threads: int | None = Field(None, gt=0, description="torch CPU threads; default torch's own (all cores)")
    # The framework's plots (labels, curves, confusion matrix) cost host memory of their own (yolov5
    # at imgsz 64: a peak about a fifth higher, in the final validation): off, as every trial and
    # probe measured it, so that an exported run peaks where its study said it would.
    plots: bool = Field(False, description="draw the framework's plots (memory the trials did not measure)")

    @model_validator(mode="before")
    @classmethod
    def _framework_and_model(cls, data: Any) -> Any:
        return with_framework_and_model(data)

    @model_validator(mode="after")
    def _device_fits_the_framework(self) -> TrialConfig:
        get_framework(self.framework).check_device(self.device)
        return self

    def knobs(self) -> dict[str, Any]:
        """The searched knobs as a plain mapping."""
        return {k: getattr(self, k) for k in ("batch", "imgsz", "cache", "workers", "amp")}


DEFAULT_STALL_S = 900.0
"""A trial whose processes together use under a CPU-second in this long is hung, and stopped."""


class TrialLimits(BaseModel):
    """What a trial may use before the supervisor stops it. None means no limit.

    ``stall_s`` holds even without a time limit: a training that hangs (a dataloader deadlock, a
    lock never released) uses no CPU, and without it would hold its study forever.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    memory_limit_bytes: int | None = Field(None, gt=0)
    gpu_memory_limit_bytes: int | None = Field(None, gt=0)
    time_limit_s: float | None = Field(None, gt=0)
    stall_s: float | None = Field(DEFAULT_STALL_S, gt=0)


def validation_message(error: ValidationError) -> str:
    """One line naming the first bad field of a pydantic error."""
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "value"
    message = first["msg"].removeprefix("Value error, ")
    # The checks of several fields at once name the field they speak of.
    if where == "value" and message.startswith("framework must be"):
        return message.replace("framework must be", "framework: must be", 1)
    if where == "value" and message.startswith("device "):
        return message.replace("device ", "device: ", 1)
    return f"{where}: {message}"


def resolve_model(model: str, framework: str = DEFAULT_FRAMEWORK) -> str:
    """The model as the framework's child must be given it (an absolute path, or a shipped name).

    Never downloads one: a bare yaml name such as ``yolov5n.yaml`` or ``yolo11n.yaml`` is looked up
    among the yamls the framework's package ships (found without importing it).

    Raises:
        InputError: If the model is neither an existing ``.yaml`` nor an existing ``.pt``.
    """
    return get_framework(framework).resolve_model(model)


def resolve_hyp(hyp: str | None, framework: str = DEFAULT_FRAMEWORK) -> str | None:
    """Returns the absolute path of a hyperparameter yaml; ``demo`` is memfront's own for the framework.

    Raises:
        InputError: If the file does not exist or cannot be the framework's.
    """
    if hyp is None:
        return None
    chosen = get_framework(framework)
    if hyp == "demo":
        return str(chosen.demo_hyp())
    path = Path(hyp).expanduser()
    if not path.is_file():
        raise InputError(f"hyp yaml not found: {hyp}")
    chosen.check_hyp(path)
    return str(path.resolve())
