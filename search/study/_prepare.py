"""A study: its definition checked, its storage opened, its sampler made; ready for workers to run.

:func:`prepare_study` reports every bad input before anything is stored; the search loop itself is
:func:`search.study._optimize.run_worker`.
"""

from __future__ import annotations

import dataclasses
import random
import uuid
from pathlib import Path

import optuna

from search.data._dataset import DatasetSpec, load_dataset
from search.data._labels import label_notes
from search.errors import InputError, StorageError
from search.frameworks import get_framework
from search.model._predict import DatasetStats
from search.model._preflight import Preflight
from search.probe._store import PROBE_STUDY, ProbeKey, ProbeStore
from search.study._compatible import check_compatible, setup_of
from search.study._journal import journal_damage, journal_holds_records, not_a_journal
from search.study._probes import StudyProbes
from search.study._record_files import RecordFiles
from search.study._space import EffectiveSpace, KnobRoles, effective_space, make_sampler
from search.study._spec import StudySpec, path_beside
from search.study._storage import (
    default_storage_url,
    error_line,
    foreign_tables,
    holds_optuna_tables,
    is_concurrent_safe,
    journal_path,
    make_storage,
    quiet_optuna,
    safe_url,
    storage_file,
    url_beside,
)
from search.study._stored import StudyKeys
from search.study._workers import WorkerIdentity, workers_seen
from search.trial._config import TrialConfig, TrialLimits, resolve_hyp, resolve_model

__all__ = [
    "PreparedStudy",
    "open_study",
    "prepare_study",
    "read_study_dataset",
    "resolve_data",
    "resolve_hyp_path",
    "storage_url",
]


def storage_url(spec: StudySpec, spec_path: Path, override: str | None = None, *, jobs: int = 1) -> str:
    """The study's storage: ``--storage``, else the file's ``storage``, else a file beside it.

    A relative file path in ``--storage`` is the shell's (the working directory); in the file's
    ``storage`` it is relative to the study file, as ``data``, ``model`` and ``hyp`` are.

    The file beside it is SQLite for one local worker and a journal for several (see
    :func:`search.study._storage.default_storage_url`).
    """
    if override:
        return override
    if spec.storage:
        url = url_beside(spec.storage, spec_path.parent)
        _refuse_a_study_left_behind(spec.storage, url)
        return url
    return default_storage_url(spec_path.parent, spec.name, jobs=jobs)


def _refuse_a_study_left_behind(written: str, url: str) -> None:
    """Raises if the file's relative storage names no file beside the study file, but one in the
    working directory: where memfront before 2026-12-06 read it. Opening the first would start an
    empty study while the stored one sits elsewhere."""
    beside = storage_file(url)
    shells = storage_file(written)
    if beside is None or shells is None or beside.exists() or not shells.exists():
        return
    shells = shells.absolute()  # a relative journal's, named as the working directory's
    raise InputError(
        f"storage {written}: a study file's relative storage is read beside the study file ({beside}), "
        f"which does not exist, but {shells} does: make the path absolute or move the file"
    )


def open_study(
    spec: StudySpec, url: str, *, create: bool, space: EffectiveSpace | None = None, seed: int | None = None
) -> optuna.Study:
    """Creates or loads the study; refuses one of the same name with other objectives.

    Args:
        spec: The study definition.
        url: Its storage.
        create: Create the study if it does not exist (else it must).
        space: The effective search space (default: the spec's, adjusted to this machine).
        seed: The sampler's seed (default: the spec's). Workers of one study need different seeds,
            or they propose the same configurations.

    Raises:
        InputError: If the storage cannot be reached, the study does not exist (``create=False``)
            or exists with different objectives.
    """
    file = storage_file(url)
    if not create and file is not None and not file.is_file():
        # Opening a SQLite or journal file creates it: a read-only command must leave nothing behind
        # (an empty journal beside the study file would hide its SQLite file from every later command).
        missing = (
            "does not exist"
            if file.parent.is_dir()
            else f"is in a folder that does not exist ({file.parent})"
        )
        raise InputError(f"no study named {spec.name!r}: its storage file {file} {missing}: run it first")
    journal = journal_path(url)
    if journal is not None and (foreign := not_a_journal(journal)) is not None:
        raise StorageError(f"storage {url}: {foreign}")
    if not create and not holds_optuna_tables(url):
        # An RDB storage creates Optuna's tables in any database: a read-only command must not.
        raise InputError(f"no study named {spec.name!r} in {safe_url(url)}: run it first")
    if create and file is not None and not file.exists() and (off_stride := spec.space.off_stride()):
        raise InputError(off_stride)  # a new study, refused before its storage is made
    if create and (file is None or file.is_file()) and (own := foreign_tables(url)):
        raise InputError(
            f"storage {safe_url(url)} is a database of other tables ({', '.join(sorted(own)[:3])}"
            f"{', ...' if len(own) > 3 else ''}), not a study's: name an empty or new database"
        )
    storage = make_storage(url, heartbeat_interval=spec.heartbeat_interval, grace_period=spec.heartbeat_grace)
    try:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
    except Exception as error:  # the server went away, or refused this user the tables
        raise StorageError(f"storage {safe_url(url)} cannot be read: {error_line(error)}") from None
    if not create:
        if spec.name not in names:
            raise InputError(f"no study named {spec.name!r} in {safe_url(url)}: run it first")
        loaded = optuna.load_study(study_name=spec.name, storage=storage)
        check_compatible(loaded, spec, url)
        return loaded
    space = space or effective_space(spec)
    damage = None if journal is None else journal_damage(journal)
    if damage is not None:
        raise StorageError(
            f"storage {safe_url(url)}: {damage}; nothing was written to it: remove that line (a write cut "
            "short) or restore the file from a copy, then run again"
        )
    if spec.name in names:
        existing = optuna.load_study(study_name=spec.name, storage=storage)
        check_compatible(existing, spec, url, space=space)
    elif (off_stride := spec.space.off_stride()) is not None:
        raise InputError(off_stride)
    with quiet_optuna():
        study = optuna.create_study(
            study_name=spec.name,
            storage=storage,
            directions=spec.directions,
            load_if_exists=True,
            sampler=make_sampler(spec, space, spec.seed if seed is None else seed),
        )
    if StudyKeys.RECORDS_TOKEN not in study.user_attrs:
        study.set_user_attr(StudyKeys.RECORDS_TOKEN, uuid.uuid4().hex[:8])
    study.set_user_attr(StudyKeys.OBJECTIVES, spec.objectives)
    study.set_user_attr(StudyKeys.MEMORY_LIMIT, spec.memory_limit)
    study.set_user_attr(StudyKeys.FRAMEWORK, spec.framework)
    study.set_user_attr(StudyKeys.SETUP, setup_of(spec))
    return study


def record_files(spec: StudySpec, spec_path: Path, study: optuna.Study | None = None) -> RecordFiles:
    """Where the study's trial records keep their bulky parts: ``<name>.records/`` beside the file.

    The files a run writes are named after the study's token too (``trial-00003-<token>.json``), so
    that the same study file run against two storages keeps both storages' records apart; each
    trial stores its file's name, so reading needs no token (and reads those written before it).
    """
    token = None if study is None else study.user_attrs.get(StudyKeys.RECORDS_TOKEN)
    return RecordFiles(folder=spec_path.parent / f"{spec.name}.records", token=token)


def _demo_data_yaml(spec: StudySpec, spec_path: Path) -> Path:
    val = "" if spec.demo_val_images is None else f"-val{spec.demo_val_images}"
    folder = spec_path.parent / "demo-data" / f"shapes-{spec.demo_images}-{spec.demo_size}{val}"
    return folder.resolve() / "data.yaml"


def resolve_data(spec: StudySpec, spec_path: Path) -> str:
    """The data yaml to train on (an absolute path); ``demo`` is the synthetic dataset beside the
    study file, generated when missing, its yaml's ``path`` mended when the checkout moved."""
    if spec.data != "demo":
        return path_beside(spec.data, spec_path)
    from search.data._demo import make_demo_dataset, mend_demo_path

    data_yaml = _demo_data_yaml(spec, spec_path)
    if data_yaml.is_file():
        mend_demo_path(data_yaml)  # written last: the dataset is whole
    else:
        make_demo_dataset(
            data_yaml.parent, images=spec.demo_images, val_images=spec.demo_val_images,
            size=spec.demo_size, seed=0,
        )  # fmt: skip
    return str(data_yaml)


def read_study_dataset(spec: StudySpec, spec_path: Path) -> DatasetSpec:
    """The study's dataset as it is, for commands that only read: nothing is generated or rewritten
    (a demo dataset is read where its yaml is, wherever the checkout was when it was made).

    Raises:
        InputError: If the dataset is not at hand (moved, or the demo's not generated here).
    """
    if spec.data != "demo":
        return load_dataset(resolve_data(spec, spec_path))
    data_yaml = _demo_data_yaml(spec, spec_path)
    if not data_yaml.is_file():
        raise InputError(f"the demo dataset is not in {data_yaml.parent} (a run generates it)")
    return load_dataset(data_yaml, root=data_yaml.parent)


def resolve_hyp_path(spec: StudySpec, spec_path: Path) -> str | None:
    """The study's hyp yaml: ``demo``, or a path relative to the study file."""
    if spec.hyp is None or spec.hyp == "demo":
        return spec.hyp
    return path_beside(spec.hyp, spec_path)


@dataclasses.dataclass(frozen=True)
class PreparedStudy:
    """A study checked and opened, ready to run: every bad input has been reported by now."""

    spec: StudySpec
    study: optuna.Study
    space: EffectiveSpace
    data: str
    hyp: str | None
    preflight: Preflight | None
    url: str
    worker: WorkerIdentity
    threads: int | None = None
    record_files: RecordFiles | None = None
    probes: StudyProbes | None = None
    stats: DatasetStats | None = None
    footprint_bytes: int | None = None

    @property
    def roles(self) -> KnobRoles:
        """Which knobs make an accuracy config in this study (its framework's)."""
        return KnobRoles.of(self.spec.framework)


def prepare_study(
    spec: StudySpec,
    spec_path: Path,
    *,
    storage: str | None = None,
    jobs: int = 1,
    worker_index: int | None = None,
) -> PreparedStudy:
    """Checks everything a run needs and creates or loads the study.

    Args:
        spec: The study definition (its ``device`` is this worker's).
        spec_path: The study file, for relative paths and the default storage.
        storage: A storage URL overriding the spec's.
        jobs: Local workers that will share this machine: their limits must fit its free memory
            together, and their storage must take concurrent writers.
        worker_index: This worker's index among ``jobs`` (it offsets the sampler's seed).

    Raises:
        InputError: For a bad dataset, hyp, objective, device or storage, or a limit that cannot be
            met; nothing is stored then.
    """
    if "peak_gpu" in spec.objectives and spec.device == "cpu":
        raise InputError("objective peak_gpu needs a CUDA device: set device in the study file")
    from search.measure._footprint import check_device, framework_footprint_bytes

    check_device(spec.device)
    footprint = framework_footprint_bytes(device=spec.device, framework=spec.framework)
    if spec.memory_limit <= footprint:
        raise InputError(
            f"memory_limit {spec.memory_limit / 1024**2:.0f} MiB is below the framework's own footprint "
            f"({footprint / 1024**2:.0f} MiB: Python with torch and {spec.framework} imported, no training)"
        )
    if jobs > 1:
        _check_jobs_fit(spec, jobs)
    url = storage_url(spec, spec_path, storage, jobs=jobs)
    if jobs > 1 and not is_concurrent_safe(url):
        raise InputError(
            f"--jobs {jobs}: {safe_url(url)} is SQLite, which is not safe for concurrent writers; "
            "use a journal:PATH or postgresql:// storage (or no --storage: a journal beside the study)"
        )
    space = effective_space(spec)
    # The model and hyp before the data, which may be generated (minutes), and before the storage
    # is created: a refused run leaves nothing behind.
    resolve_model(spec.model, spec.framework)
    hyp = resolve_hyp_path(spec, spec_path)
    resolve_hyp(hyp, spec.framework)
    data = resolve_data(spec, spec_path)
    dataset = load_dataset(data)
    stats = DatasetStats.read(dataset)
    labels = label_notes(dataset, get_framework(spec.framework), unreadable=stats.unreadable_images)
    notes = (stats.unreadable_note, *labels)
    space = dataclasses.replace(space, notes=(*space.notes, *(note for note in notes if note)))
    if jobs > 1 and storage is None and spec.storage is None:
        _move_to_journal(spec, spec_path, url)
    study = open_study(spec, url, create=True, space=space)
    study.set_user_attr(StudyKeys.FOOTPRINT, footprint)
    worker = WorkerIdentity.here(device=spec.device, index=worker_index)
    if worker_index:
        study.sampler = make_sampler(spec, space, spec.seed + worker_index)
    elif worker_index is None and workers_seen(study, within_s=spec.heartbeat_grace):
        # Another worker runs this study now: the same seed would propose the same configurations.
        study.sampler = make_sampler(spec, space, spec.seed + 1 + random.SystemRandom().randrange(2**30))
    preflight = None
    if spec.preflight_margin is not None:
        from search.model._calibration import calibrate, load_calibration

        calibration = (
            calibrate(model=spec.model, device=spec.device, framework=spec.framework) if spec.calibrate
            else load_calibration(spec.model, spec.device, framework=spec.framework)
        )  # fmt: skip
        preflight = Preflight(
            stats=stats, limit_bytes=spec.memory_limit,
            margin=spec.preflight_margin, calibration=calibration, min_samples=spec.preflight_min_samples,
            device=spec.device, framework=spec.framework, footprint_bytes=footprint,
        )  # fmt: skip
    probes = None
    if spec.probe_share > 0:
        probes = study_probes(spec, study, dataset, data=data, hyp=hyp, worker=worker.name, stats=stats)
    return PreparedStudy(
        spec=spec, study=study, space=space, data=data, hyp=hyp, preflight=preflight, url=url, worker=worker,
        record_files=record_files(spec, spec_path, study), probes=probes, stats=stats,
        footprint_bytes=footprint,
    )  # fmt: skip


def probe_store(
    spec: StudySpec, study: optuna.Study, dataset: DatasetSpec, *, hyp: str | None, create: bool = True
) -> ProbeStore:
    """The probes of the study's dataset and machine, in the study's storage (``create=False``:
    read only, never adding the probes' study to the storage)."""
    key = ProbeKey.of(
        dataset, framework=spec.framework, model=resolve_model(spec.model, spec.framework), hyp=hyp,
        device=spec.device,
    )  # fmt: skip
    return ProbeStore(storage=study._storage, key=key, create=create)


def study_probes(
    spec: StudySpec,
    study: optuna.Study,
    dataset: DatasetSpec,
    *,
    data: str,
    hyp: str | None,
    worker: str,
    stats: DatasetStats,
) -> StudyProbes:
    """A worker's probes of the study (:mod:`search.study._probes`)."""
    base = TrialConfig(
        data=data, framework=spec.framework, model=spec.model, hyp=hyp, device=spec.device, seed=spec.seed
    )
    limits = TrialLimits(memory_limit_bytes=spec.memory_limit, gpu_memory_limit_bytes=spec.gpu_memory_limit)
    return StudyProbes(
        store=probe_store(spec, study, dataset, hyp=hyp), stats=stats, base_config=base,
        limits=limits, probe_share=spec.probe_share, worker=worker,
    )  # fmt: skip


def _move_to_journal(spec: StudySpec, spec_path: Path, journal_url: str) -> None:
    """Copies a study run so far in the default SQLite file into the journal that ``--jobs`` uses.

    From then on every command finds the study in the journal (it wins when both files exist), so
    nothing run before is lost from view. The SQLite file is left as it was.
    """
    sqlite = spec_path.parent / f"{spec.name}.db"
    journal = journal_path(journal_url)
    if not sqlite.is_file() or journal is None or journal_holds_records(journal):
        return
    source = make_storage(f"sqlite:///{sqlite.resolve()}", heartbeat_interval=1, grace_period=2)
    if spec.name not in {s.study_name for s in optuna.get_all_study_summaries(source)}:
        return
    target = make_storage(journal_url, heartbeat_interval=1, grace_period=2)
    optuna.copy_study(from_study_name=spec.name, from_storage=source, to_storage=target)
    if PROBE_STUDY in {s.study_name for s in optuna.get_all_study_summaries(source)}:
        # The probes taken so far (by the study or ``memfront probe --study``) move with it.
        optuna.copy_study(from_study_name=PROBE_STUDY, from_storage=source, to_storage=target)


def _check_jobs_fit(spec: StudySpec, jobs: int) -> None:
    """Jobs on one host share its memory: each may use up to the limit, all at once."""
    import psutil

    available = psutil.virtual_memory().available
    if jobs * spec.memory_limit > available:
        raise InputError(
            f"--jobs {jobs} x memory_limit {spec.memory_limit / 1024**3:.1f} GiB needs "
            f"{jobs * spec.memory_limit / 1024**3:.1f} GiB, but this machine has "
            f"{available / 1024**3:.1f} GiB available: use fewer jobs or a lower limit"
        )
