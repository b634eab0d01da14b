"""The search: an Optuna study over the memory knobs, one measured trial per configuration.

Infeasible is not failed: a trial that crossed its memory limit is COMPLETE with a positive
constraint violation (``peak - limit``), so that Optuna's constrained samplers learn to avoid that
region; crashed and timed-out trials are FAIL (samplers ignore those).
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna

from search.config import TrialConfig, TrialLimits, resolve_hyp
from search.errors import InputError
from search.predict import DatasetStats, Prediction
from search.preflight import Preflight
from search.record import TrialRecord
from search.space import KNOBS, EffectiveSpace, effective_space, suggest
from search.studyfile import StudySpec
from search.supervisor import TrialProgress, run_trial

__all__ = [
    "PreparedStudy",
    "StudyEvents",
    "StudyOutcome",
    "objective_values",
    "open_study",
    "prepare_study",
    "resolve_data",
    "resolve_hyp_path",
    "run_study",
    "storage_url",
]

_MAX_CONSECUTIVE_DUPLICATES = 30


def storage_url(spec: StudySpec, spec_path: Path, override: str | None = None) -> str:
    """The study's storage: ``--storage``, else the file's ``storage``, else SQLite beside it."""
    if override:
        return override
    if spec.storage:
        return spec.storage
    return f"sqlite:///{(spec_path.parent / f'{spec.name}.db').resolve()}"


def _constraints(trial: optuna.trial.FrozenTrial) -> list[float]:
    return list(trial.user_attrs.get("constraint", [0.0]))


class _AskTellGridSampler(optuna.samplers.GridSampler):
    """Optuna's grid sampler for ask-and-tell.

    Its ``after_trial`` calls ``study.stop()`` once the grid is exhausted, which raises outside
    ``study.optimize``; :func:`run_study` stops by itself when every configuration is evaluated.
    """

    def after_trial(
        self,
        study: optuna.Study,
        trial: optuna.trial.FrozenTrial,
        state: optuna.trial.TrialState,
        values: Any,
    ) -> None:
        return None


def _sampler(spec: StudySpec, space: EffectiveSpace) -> optuna.samplers.BaseSampler:
    if spec.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=spec.seed, constraints_func=_constraints, multivariate=True)
    if spec.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=spec.seed, constraints_func=_constraints, population_size=8)
    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=spec.seed)
    return _AskTellGridSampler({k: space.choices[k] for k in space.searched}, seed=spec.seed)


def _safe_url(url: str) -> str:
    head, sep, tail = url.partition("@")
    if not sep or "://" not in head:
        return url
    scheme, _, credentials = head.partition("://")
    return f"{scheme}://{credentials.split(':')[0]}:***@{tail}" if ":" in credentials else url


def open_study(
    spec: StudySpec, url: str, *, create: bool, space: EffectiveSpace | None = None
) -> optuna.Study:
    """Creates or loads the study; refuses one of the same name with other objectives.

    Raises:
        InputError: If the storage cannot be reached, the study does not exist (``create=False``)
            or exists with different objectives.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        storage = optuna.storages.get_storage(url)
    except Exception as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError(f"storage {_safe_url(url)} cannot be opened: {message}") from None
    names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
    if not create:
        if spec.name not in names:
            raise InputError(f"no study named {spec.name!r} in {_safe_url(url)}: run it first")
        return optuna.load_study(study_name=spec.name, storage=storage)
    if spec.name in names:
        existing = optuna.load_study(study_name=spec.name, storage=storage)
        stored = existing.user_attrs.get("objectives")
        if stored is not None and stored != spec.objectives:
            raise InputError(
                f"study {spec.name!r} in {_safe_url(url)} has objectives {stored}, not {spec.objectives}: "
                "rename the study or use another storage"
            )
    study = optuna.create_study(
        study_name=spec.name,
        storage=storage,
        directions=spec.directions,
        load_if_exists=True,
        sampler=_sampler(spec, space or effective_space(spec)),
    )
    study.set_user_attr("objectives", spec.objectives)
    study.set_user_attr("memory_limit_bytes", spec.memory_limit)
    return study


def resolve_data(spec: StudySpec, spec_path: Path) -> str:
    """The data yaml to train on; ``demo`` generates the synthetic dataset beside the study file."""
    if spec.data != "demo":
        path = Path(spec.data).expanduser()
        return str(path if path.is_absolute() else (spec_path.parent / path).resolve())
    from search.demo import make_demo_dataset

    folder = spec_path.parent / "demo-data" / f"shapes-{spec.demo_images}-{spec.demo_size}"
    data_yaml = folder / "data.yaml"
    if not data_yaml.is_file():
        make_demo_dataset(folder, images=spec.demo_images, size=spec.demo_size, seed=0)
    return str(data_yaml)


def resolve_hyp_path(spec: StudySpec, spec_path: Path) -> str | None:
    """The study's hyp yaml: ``demo``, or a path relative to the study file."""
    if spec.hyp is None or spec.hyp == "demo":
        return spec.hyp
    path = Path(spec.hyp).expanduser()
    return str(path if path.is_absolute() else (spec_path.parent / path).resolve())


def objective_values(record: TrialRecord, objectives: list[str]) -> list[float] | None:
    """The trial's objective values in study order; None if any is missing."""
    figures = {
        "map50_95": record.map50_95,
        "map50": record.map50,
        "fitness": record.fitness,
        "peak_host": record.peak_host_bytes,
        "peak_gpu": record.peak_gpu_bytes,
        "epoch_seconds": record.epoch_seconds,
    }
    values = [figures[name] for name in objectives]
    return None if any(v is None for v in values) else [float(v) for v in values]  # type: ignore[arg-type]


@dataclasses.dataclass
class StudyEvents:
    """Hooks for a progress display. All optional."""

    on_notes: Callable[[tuple[str, ...]], None] | None = None
    on_trial_start: Callable[[int, dict[str, Any]], None] | None = None
    on_progress: Callable[[TrialProgress], None] | None = None
    on_trial_end: Callable[[int, TrialRecord, str | None], None] | None = None


@dataclasses.dataclass
class StudyOutcome:
    """How a ``run`` ended."""

    trained: int
    total_finished: int
    duplicates: int
    interrupted: bool
    stop_reason: str
    wall_seconds: float
    train_wall_seconds: float
    preflight_skipped: int = 0
    preflight_seconds_saved: float = 0.0


def _finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [
        t
        for t in study.get_trials(deepcopy=False)
        if t.state.is_finished()
        and t.user_attrs.get("status") not in (None, "interrupted")
        and "duplicate_of" not in t.user_attrs
    ]


def _config_key(params: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(params[k] for k in KNOBS)


def _tell(study: optuna.Study, trial: optuna.Trial, record: TrialRecord, spec: StudySpec) -> None:
    slim = record.to_dict()
    trial.set_user_attr("record", slim)
    trial.set_user_attr("status", record.status)
    trial.set_user_attr("config", {k: record.requested[k] for k in KNOBS})
    for key in ("map50", "map50_95", "fitness", "peak_host_bytes", "peak_gpu_bytes", "epoch_seconds"):
        trial.set_user_attr(key, getattr(record, key))
    values = objective_values(record, spec.objectives)
    if record.status == "ok" and values is not None:
        peak = record.peak_host_bytes or 0
        trial.set_user_attr("constraint", [float(peak - spec.memory_limit)])
        study.tell(trial, values)
    elif record.status in ("memory_limit", "predicted"):
        peak = record.peak_host_bytes or spec.memory_limit
        violation = max(1.0, float(peak - spec.memory_limit))
        trial.set_user_attr("constraint", [violation])
        worst = [0.0 if d == "maximize" else float(peak) for d in spec.directions]
        study.tell(trial, worst)
    else:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)


@dataclasses.dataclass(frozen=True)
class PreparedStudy:
    """A study checked and opened, ready to run: every bad input has been reported by now."""

    spec: StudySpec
    study: optuna.Study
    space: EffectiveSpace
    data: str
    hyp: str | None
    preflight: Preflight | None


def prepare_study(spec: StudySpec, spec_path: Path, *, storage: str | None = None) -> PreparedStudy:
    """Checks everything a run needs and creates or loads the study.

    Raises:
        InputError: For a bad dataset, hyp, objective or storage; nothing is stored then.
    """
    if "peak_gpu" in spec.objectives and spec.device == "cpu":
        raise InputError("objective peak_gpu needs a CUDA device: set device in the study file")
    from search.dataset import load_dataset
    from search.footprint import framework_footprint_bytes

    footprint = framework_footprint_bytes(device=spec.device)
    if spec.memory_limit <= footprint:
        raise InputError(
            f"memory_limit {spec.memory_limit / 1024**2:.0f} MiB is below the framework's own footprint "
            f"({footprint / 1024**2:.0f} MiB: Python with torch and yolov5 imported, nothing trained)"
        )
    space = effective_space(spec)
    data = resolve_data(spec, spec_path)
    dataset = load_dataset(data)
    hyp = resolve_hyp_path(spec, spec_path)
    resolve_hyp(hyp)
    study = open_study(spec, storage_url(spec, spec_path, storage), create=True, space=space)
    preflight = None
    if spec.preflight_margin is not None:
        from search.calibration import calibrate, load_calibration

        calibration = (
            calibrate(model=spec.model, device=spec.device) if spec.calibrate
            else load_calibration(spec.model, spec.device)
        )  # fmt: skip
        preflight = Preflight(
            stats=DatasetStats.read(dataset), limit_bytes=spec.memory_limit,
            margin=spec.preflight_margin, calibration=calibration, min_samples=spec.preflight_min_samples,
        )  # fmt: skip
    return PreparedStudy(spec=spec, study=study, space=space, data=data, hyp=hyp, preflight=preflight)


def run_study(prepared: PreparedStudy, *, events: StudyEvents | None = None) -> StudyOutcome:
    """Trains until ``n_trials`` configurations of the study are done (resuming what is stored).

    Args:
        prepared: The study from :func:`prepare_study`.
        events: Progress hooks.

    Returns:
        How the run ended.
    """
    events = events or StudyEvents()
    spec, study, space, data = prepared.spec, prepared.study, prepared.space, prepared.data
    study.set_user_attr("notes", list(space.notes))
    if space.notes and events.on_notes:
        events.on_notes(space.notes)
    # A configuration whose trial was interrupted is trained again first.
    requeued = set(study.user_attrs.get("requeued", []))
    for frozen in study.get_trials(deepcopy=False):
        if frozen.user_attrs.get("status") == "interrupted" and frozen.number not in requeued:
            study.enqueue_trial(frozen.user_attrs["config"])
            requeued.add(frozen.number)
    study.set_user_attr("requeued", sorted(requeued))
    preflight = prepared.preflight
    if preflight is not None:
        preflight.load(study.get_trials(deepcopy=False))
    started = time.monotonic()
    trained = duplicates = consecutive = 0
    walls = [
        float(t.user_attrs["record"]["wall_seconds"]) for t in study.get_trials(deepcopy=False)
        if t.user_attrs.get("status") == "ok" and "record" in t.user_attrs
    ]  # fmt: skip
    train_wall = 0.0
    interrupted = False
    stop_reason = "n_trials reached"
    while True:
        done = _finished(study)
        if len(done) >= spec.n_trials:
            break
        seen = {_config_key(t.user_attrs["config"]): t for t in done if "config" in t.user_attrs}
        if len(seen) >= space.size:
            stop_reason = "every configuration of the space is evaluated"
            break
        elapsed = time.monotonic() - started
        if spec.timeout is not None and elapsed >= spec.timeout:
            stop_reason = "study timeout reached"
            break
        if spec.timeout is not None and walls and spec.timeout - elapsed < 0.8 * statistics.median(walls):
            # A trial cut by the study's timeout measures nothing: do not start one that cannot end.
            stop_reason = "too little of the study's timeout left for another trial"
            break
        trial = study.ask()
        params = suggest(trial, spec, space)
        earlier = seen.get(_config_key(params))
        if earlier is not None:
            duplicates += 1
            consecutive += 1
            trial.set_user_attr("duplicate_of", earlier.number)
            for key in ("status", "config", "constraint", "map50", "map50_95", "peak_host_bytes"):
                if key in earlier.user_attrs:
                    trial.set_user_attr(key, earlier.user_attrs[key])
            complete = earlier.state == optuna.trial.TrialState.COMPLETE
            study.tell(trial, earlier.values if complete else None, state=earlier.state)
            if consecutive >= _MAX_CONSECUTIVE_DUPLICATES:
                stop_reason = "the sampler keeps proposing evaluated configurations"
                break
            continue
        consecutive = 0
        config = TrialConfig(
            data=data,
            model=spec.model,
            hyp=prepared.hyp,
            epochs=spec.epochs,
            device=spec.device,
            seed=spec.seed,
            train_images=spec.train_images,
            **params,
        )
        remaining = None if spec.timeout is None else max(1.0, spec.timeout - elapsed)
        time_limit = min(filter(None, [spec.trial_time_limit, remaining]), default=None)
        limits = TrialLimits(
            memory_limit_bytes=spec.memory_limit,
            gpu_memory_limit_bytes=spec.gpu_memory_limit,
            time_limit_s=time_limit,
        )
        if preflight is not None:
            prediction = preflight.predict(params, train_images=spec.train_images)
            trial.set_user_attr("predicted_peak_bytes", prediction.total_bytes)
            if preflight.should_skip(prediction):
                skipped = _predicted_record(config, limits, prediction, preflight)
                _tell(study, trial, skipped, spec)
                preflight.skipped += 1
                if events.on_trial_end:
                    events.on_trial_end(trial.number, skipped, None)
                continue
        if events.on_trial_start:
            events.on_trial_start(trial.number, params)
        try:
            record = run_trial(config, limits=limits, on_progress=events.on_progress)
        except BaseException:
            # Never leave a RUNNING trial behind: a resumed study would count it forever.
            trial.set_user_attr("status", "interrupted")
            trial.set_user_attr("config", params)
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            raise
        train_wall += record.wall_seconds
        if record.status == "ok":
            walls.append(record.wall_seconds)
        if preflight is not None:
            preflight.observe(record)
        _tell(study, trial, record, spec)
        trained += 1
        if events.on_trial_end:
            events.on_trial_end(trial.number, record, None)
        if record.status == "interrupted":
            interrupted, stop_reason = True, "interrupted"
            break
    return StudyOutcome(
        trained=trained,
        total_finished=len(_finished(study)),
        duplicates=duplicates,
        interrupted=interrupted,
        stop_reason=stop_reason,
        wall_seconds=time.monotonic() - started,
        train_wall_seconds=train_wall,
        preflight_skipped=0 if preflight is None else preflight.skipped,
        preflight_seconds_saved=0.0 if preflight is None else preflight.seconds_saved(),
    )


def _predicted_record(
    config: TrialConfig, limits: TrialLimits, prediction: Prediction, preflight: Preflight
) -> TrialRecord:
    """The record of a configuration skipped by pre-flight: infeasible by prediction, not trained."""
    return TrialRecord(
        status="predicted",
        map50=None,
        map50_95=None,
        fitness=None,
        peak_host_bytes=int(prediction.total_bytes),
        peak_gpu_bytes=None,
        epoch_seconds=None,
        wall_seconds=0.0,
        phases={},
        requested=config.model_dump(),
        used={},
        limits=limits.model_dump(),
        epochs=[],
        memory={"prediction": prediction.to_dict(), "model": preflight.model.to_dict()},
        gpu={},
        exit_code=None,
        error=(
            f"not trained: predicted peak {prediction.total_bytes / 1024**3:.2f} GiB exceeds the limit "
            f"{preflight.limit_bytes / 1024**3:.2f} GiB by more than {100 * preflight.margin:.0f}%"
        ),
    )
