"""Study definitions: ``studies/<name>.yaml``, validated on load."""

from __future__ import annotations

import difflib
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from search.accuracy._noise import DEFAULT_FAMILY_WISE, DEFAULT_MIN_DF, DEFAULT_RESOLUTION, NoiseRules
from search.errors import InputError
from search.frameworks import DEFAULT_FRAMEWORK, get_framework, with_framework_and_model
from search.units import parse_duration, parse_size

__all__ = [
    "ACCURACY_OBJECTIVES",
    "DIRECTIONS",
    "MEMORY_OBJECTIVES",
    "IntRange",
    "MemoryAxis",
    "SearchSpace",
    "StudySpec",
    "load_study_spec",
    "memory_axis",
]

ACCURACY_OBJECTIVES = ("map50_95", "map50", "fitness")
MEMORY_OBJECTIVES = ("peak_host", "peak_gpu")

MemoryAxis = Literal["host", "gpu"]
"""Which memory a study's front ranks: peak host memory (the leanest measured system setting's, on
the whole dataset) or peak GPU memory (the median of the config's trainings' GPU peaks)."""


def memory_axis(objectives: Sequence[str]) -> MemoryAxis:
    """The memory a study with these objectives ranks its front on: its memory objective's."""
    return "gpu" if len(objectives) > 1 and objectives[1] == "peak_gpu" else "host"


CacheMode = Literal["none", "ram", "disk"]
DIRECTIONS: dict[str, Literal["minimize", "maximize"]] = {
    "map50_95": "maximize",
    "map50": "maximize",
    "fitness": "maximize",
    "peak_host": "minimize",
    "peak_gpu": "minimize",
    "epoch_seconds": "minimize",
}


MAX_RANGE_VALUES = 256
"""The most values an integer range of the search space may have."""


class IntRange(BaseModel):
    """An integer range ``{low, high, step}``; both ends included."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    low: int
    high: int
    step: int = Field(1, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> IntRange:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) > high ({self.high})")
        if (self.high - self.low) % self.step:
            # Optuna would cut such a range short with a warning; both ends are meant to be values.
            below = self.high - (self.high - self.low) % self.step
            raise ValueError(
                f"high - low ({self.high - self.low}) is not a multiple of step ({self.step}): "
                f"high {below} or {below + self.step}?"
            )
        count = (self.high - self.low) // self.step + 1
        if count > MAX_RANGE_VALUES:
            # Each value is a choice the study plans over (every accuracy config is a product of
            # them): a typo such as high: 100000000 must be an error, not millions of choices.
            raise ValueError(f"{count} values; at most {MAX_RANGE_VALUES} (a larger step, or a list)")
        return self

    def values(self) -> list[int]:
        """Every value of the range."""
        return list(range(self.low, self.high + 1, self.step))


_STRIDE = 32
"""The stride of the YOLO detection models (P6 models: 64): the frameworks round imgsz up to a
multiple of their model's."""


class SearchSpace(BaseModel):
    """The knobs the study searches. A list is a set of choices; a mapping an integer range; a
    single value (``imgsz: 640``) the one choice."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("batch", "imgsz", "cache", "workers", "amp", mode="before")
    @classmethod
    def _one_value(cls, value: Any, info: ValidationInfo) -> Any:
        one = str if info.field_name == "cache" else int  # bool is an int: amp's one value too
        return [value] if isinstance(value, one) else value

    batch: list[int] | IntRange = Field(default_factory=lambda: [8, 16])
    imgsz: list[int] | IntRange = Field(default_factory=lambda: [320])
    cache: list[CacheMode] = Field(default_factory=lambda: list[CacheMode](["none"]))
    workers: list[int] | IntRange = Field(default_factory=lambda: [0])
    amp: list[bool] = Field(default_factory=lambda: [False])

    @field_validator("batch", "imgsz", "cache", "workers", "amp")
    @classmethod
    def _not_empty(cls, value: Any) -> Any:
        if isinstance(value, list) and not value:
            raise ValueError("must list at least one value")
        return value

    @model_validator(mode="after")
    def _positive(self) -> SearchSpace:
        for name, minimum in (("batch", 1), ("imgsz", 1), ("workers", 0)):
            values = self.choices(name)
            if min(values) < minimum:
                raise ValueError(f"{name} must be >= {minimum}, got {min(values)}")
        return self

    def off_stride(self) -> str | None:
        """Why an imgsz choice is not one a new study takes, or None: the frameworks round imgsz up to
        a multiple of the model's stride (32), so 70 would train as 96, one config under two names
        whose trainings would not pool. (A study stored with one keeps it: its file must still load.)"""
        odd = [size for size in self.choices("imgsz") if size % _STRIDE]
        if not odd:
            return None
        rounded = -(-odd[0] // _STRIDE) * _STRIDE
        return f"space.imgsz: {odd[0]} is not a multiple of {_STRIDE}: it would train as {rounded}"

    def choices(self, name: str) -> list[Any]:
        """The values a knob can take, in order."""
        value = getattr(self, name)
        return value.values() if isinstance(value, IntRange) else list(dict.fromkeys(value))


class NoisePrior(BaseModel):
    """A prior guess of the accuracy noise: one training's sd, worth ``df`` replicates' degrees of freedom.

    From an earlier study of the same setup (``memfront report`` prints its noise), so that a new
    study ranks without first spending trainings on replicates to measure it again.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    sd: float = Field(gt=0, le=1)
    df: int = Field(ge=1)


class StudySpec(BaseModel):
    """A study definition as written in ``studies/<name>.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    data: str = Field(description="a YOLO data yaml, or 'demo' for the synthetic dataset")
    framework: str = Field(DEFAULT_FRAMEWORK, description="yolov5 or ultralytics; default: the model's")
    model: str = "yolov5n.yaml"
    hyp: str | None = None
    epochs: int = Field(5, gt=0)
    train_images: int | None = Field(None, gt=0)
    n_trials: int = Field(12, gt=0)
    timeout: float | None = None
    memory_limit: int
    gpu_memory_limit: int | None = None
    objectives: list[str] = Field(default_factory=lambda: ["map50_95", "peak_host"])
    sampler: Literal["tpe", "nsga2", "random", "grid"] = "tpe"
    seed: int = 0
    storage: str | None = None
    device: str = "cpu"
    trial_time_limit: float | None = None
    heartbeat_interval: float = Field(10.0, gt=0)
    heartbeat_grace: float = Field(60.0, gt=0)
    max_replicates: int = Field(3, ge=1)
    accuracy_resolution: float = Field(DEFAULT_RESOLUTION, ge=0)
    accuracy_min_df: int = Field(DEFAULT_MIN_DF, ge=1)
    accuracy_noise_prior: NoisePrior | None = None
    accuracy_family_wise: bool = DEFAULT_FAMILY_WISE
    preflight_margin: float | None = Field(0.1, ge=0)
    preflight_min_samples: int = Field(3, ge=0)
    calibrate: bool = False
    probe_share: float = Field(0.33, ge=0, le=1)
    demo_images: int = Field(256, gt=0)
    demo_size: int = Field(256, gt=0)
    demo_val_images: int | None = Field(None, gt=0)
    space: SearchSpace = Field(default_factory=SearchSpace)

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        # The name is also a file name beside the study file (<name>.db, <name>.records).
        if "/" in value or "\\" in value or value in (".", "..") or value != value.strip():
            raise ValueError(f"{value!r}: a plain name, without a path or surrounding spaces")
        return value

    @field_validator("memory_limit", "gpu_memory_limit", mode="before")
    @classmethod
    def _size(cls, value: Any) -> Any:
        if value is None:
            return None
        size = parse_size(value)
        if size < 2**20:
            # No training fits in less than a MiB: a bare number is bytes, and a unit was forgotten.
            bare = isinstance(value, int | float) or str(value).strip().replace(".", "", 1).isdigit()
            hint = f"; give a unit, e.g. {value}GiB" if bare else ""
            raise ValueError(f"{value!r} is {size} bytes, less than any training needs{hint}")
        return size

    @field_validator("timeout", "trial_time_limit", "heartbeat_interval", "heartbeat_grace", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return None if value is None else parse_duration(value)

    @model_validator(mode="before")
    @classmethod
    def _framework_and_model(cls, data: Any) -> Any:
        return with_framework_and_model(data)

    @model_validator(mode="after")
    def _device_fits_the_framework(self) -> StudySpec:
        get_framework(self.framework).check_device(self.device)
        return self

    @model_validator(mode="after")
    def _grace_covers_heartbeats(self) -> StudySpec:
        if self.heartbeat_grace < 2 * self.heartbeat_interval:
            raise ValueError(
                f"heartbeat_grace ({self.heartbeat_grace:g}s) must be at least twice heartbeat_interval "
                f"({self.heartbeat_interval:g}s), or one late heartbeat fails a live trial"
            )
        return self

    @field_validator("objectives")
    @classmethod
    def _objectives(cls, value: list[str]) -> list[str]:
        if len(value) not in (2, 3):
            raise ValueError("give an accuracy and a memory objective, optionally epoch_seconds")
        if value[0] not in ACCURACY_OBJECTIVES:
            raise ValueError(f"first objective must be one of {', '.join(ACCURACY_OBJECTIVES)}")
        if value[1] not in MEMORY_OBJECTIVES:
            raise ValueError(f"second objective must be one of {', '.join(MEMORY_OBJECTIVES)}")
        if len(value) == 3 and value[2] != "epoch_seconds":
            raise ValueError("the optional third objective is epoch_seconds")
        return value

    @property
    def memory_axis(self) -> MemoryAxis:
        """The memory this study's front ranks: its memory objective's (:func:`memory_axis`)."""
        return memory_axis(self.objectives)

    @property
    def noise_rules(self) -> NoiseRules:
        """How this study judges accuracy differences (its ``accuracy_*`` keys)."""
        prior = self.accuracy_noise_prior
        return NoiseRules(
            resolution=self.accuracy_resolution,
            min_df=self.accuracy_min_df,
            prior_sd=None if prior is None else prior.sd,
            prior_df=0 if prior is None else prior.df,
            family_wise=self.accuracy_family_wise,
        )

    @property
    def time_allowed_s(self) -> float | None:
        """The longest a training may take under this study file: the least of ``trial_time_limit``
        and ``timeout`` (each run of the study has its whole ``timeout``); None: no limit."""
        return min(filter(None, [self.trial_time_limit, self.timeout]), default=None)

    @property
    def directions(self) -> list[Literal["minimize", "maximize"]]:
        """Optuna directions, one per objective."""
        return [DIRECTIONS[name] for name in self.objectives]


def load_study_spec(path: str | Path) -> StudySpec:
    """Reads and validates a study file.

    Raises:
        InputError: Naming the file and the bad key, for any problem.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path} is a folder; give a study file (.yaml)")
    if not path.is_file():
        raise InputError(f"study file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise InputError(f"{path}: not valid YAML: {str(error).splitlines()[0]}") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text file in UTF-8 (a study file is YAML)") from None
    if not isinstance(raw, dict):
        raise InputError(f"{path}: a study file is a mapping of keys (name, data, space, ...)")
    if isinstance(raw.get("model"), str):
        # Before validation: the framework is inferred from the model file's content.
        raw["model"] = _model_beside(raw["model"], path)
    try:
        return StudySpec.model_validate(raw)
    except ValidationError as error:
        # For a union (list or range), the error of the branch the user meant says most: not "a
        # valid list" for a mapping, which was meant as a range.
        errors = [e for e in error.errors() if e["type"] != "list_type"] or error.errors()
        first = next((e for e in errors if e["type"] == "value_error"), errors[0])
        unknown = [e for e in errors if e["type"] == "extra_forbidden"]
        missing = [e for e in errors if e["type"] == "missing"]
        if unknown and missing:
            # A misspelt required key is both unknown and missing: the unknown one is the typo.
            first = unknown[0]
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message = "unknown key" + _did_you_mean(first["loc"], unknown, missing)
        elif first["type"] == "model_type" and "IntRange" in str(first["loc"][-1]):  # not list, not range
            message = "expected a list of values or a range {low, high, step}"
        elif first["type"] == "model_type":
            message = "expected a mapping of keys"
        raise InputError(f"{path}: {_key_path(first['loc']) or 'study'}: {message}") from None


def _key_path(loc: tuple[int | str, ...]) -> str:
    """A pydantic error's location as the study file's keys: ``space.imgsz.step`` (without the
    tags pydantic adds for a union's branch or a validator)."""
    return ".".join(str(p) for p in loc if not str(p).startswith(("list[", "IntRange", "function-")))


def _did_you_mean(loc: tuple[int | str, ...], unknown: list[Any], missing: list[Any]) -> str:
    """`` (did you mean memory_limit?)`` for an unknown key close to a key that can stand there, then
    the required keys missing there that no unknown key is close to (``; data: Field required``)."""
    parent = tuple(loc[:-1])
    known = _keys_at(parent)

    def meant(key: int | str) -> list[str]:
        return difflib.get_close_matches(str(key), known, n=1)

    close = meant(loc[-1])
    explained = {m for e in unknown if tuple(e["loc"][:-1]) == parent for m in meant(e["loc"][-1])}
    here = [e for e in missing if tuple(e["loc"][:-1]) == parent and e["loc"][-1] not in explained]
    hint = f" (did you mean {close[0]}?)" if close else ""
    return hint + "".join(f"; {_key_path(e['loc'])}: {e['msg']}" for e in here)


def _keys_at(parent: tuple[int | str, ...]) -> list[str]:
    """The keys a study file may have at ``parent`` (a pydantic error's location): those of the model
    found there, following each key's type from :class:`StudySpec` (a union's tags are skipped)."""
    model: type[BaseModel] | None = StudySpec
    for part in parent:
        if model is None:
            break
        field = model.model_fields.get(str(part))
        if field is not None:
            model = _model_in(field.annotation)
    return [] if model is None else list(model.model_fields)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model a field's type holds (``IntRange`` in ``list[int] | IntRange``), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next(filter(None, map(_model_in, typing.get_args(annotation))), None)


def path_beside(value: str, study_file: Path) -> str:
    """A path from a study file, made absolute: relative paths are read against the study file's
    folder (not the shell's), so a study runs the same from anywhere. ``~`` is expanded."""
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (study_file.parent / path).resolve())


def _model_beside(model: str, study_file: Path) -> str:
    """The study's model path, read as :func:`path_beside` reads ``data`` and ``hyp``.

    A bare name with no file of that name beside the study file stays as it is: the framework's
    shipped model (``yolov5n.yaml``), which the framework resolves.
    """
    if Path(model).parent == Path(".") and not (study_file.parent / model).exists():
        return model
    return path_beside(model, study_file)
