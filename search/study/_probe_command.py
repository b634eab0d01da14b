"""A probe asked for on the command line for a study: run as the study would run it, stored where it looks.

``memfront probe --study S.yaml --batch ... --cache ... --workers ...`` takes the dataset, model,
hyperparameters, device and limits from the study file, and keeps the probe in the study's storage
(the ``memfront-probes`` study, :mod:`search.probe._store`) under the same key as the study's own
probes: the study's front, export and memory model count it, and no worker probes that full config
again. A config already probed for this dataset and machine (under a limit that answers for the
study's) is not probed again here either; its stored figures are shown. Only configs of the
study's space are taken: those are the ones its front and export count.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from search.errors import InputError
from search.model._predict import DatasetStats
from search.probe._run import ProbeResult
from search.probe._store import knobs_key
from search.study._prepare import open_study, resolve_data, resolve_hyp_path, storage_url, study_probes
from search.study._probes import ProbePlan
from search.study._spec import StudySpec
from search.study._storage import safe_url
from search.study._workers import WorkerIdentity
from search.trial._config import TrialConfig, resolve_hyp, resolve_model, validation_message
from search.trial._supervisor import TrialProgress

__all__ = ["StudyProbe", "probe_for_study"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class StudyProbe:
    """A probe of a study's full config, as stored for it.

    Attributes:
        result: The probe's result (this run's, or the stored one's).
        number: Its trial number in the storage's ``memfront-probes`` study (None: not stored, as a
            probe that failed or was interrupted is not).
        reused: It was probed before, under a limit it answers for (by the study or this command),
            and not taken again.
        url: The storage, with any password hidden.
    """

    result: ProbeResult
    number: int | None
    reused: bool
    url: str


def probe_for_study(
    spec: StudySpec,
    spec_path: Path,
    knobs: Mapping[str, Any],
    *,
    storage: str | None = None,
    time_limit_s: float | None = None,
    on_progress: Callable[[TrialProgress], None] | None = None,
) -> StudyProbe:
    """Probes one full config of a study on its whole dataset and stores it in the study's storage.

    Args:
        spec: The study definition (its data, model, hyp, device and limits are the probe's).
        spec_path: The study file (relative paths, the default storage).
        knobs: The five knobs.
        storage: A storage URL overriding the study file's.
        time_limit_s: The probe's wall-clock limit (default: the study's ``trial_time_limit``).
        on_progress: Called with the probe's progress.

    Raises:
        InputError: A bad knob, dataset or hyp, a storage that cannot be read, a study stored with
            another limit or framework, or another worker probing the same config right now.
    """
    from search.data._dataset import load_dataset
    from search.measure._footprint import check_device

    check_device(spec.device)
    url = storage_url(spec, spec_path, storage)
    data = resolve_data(spec, spec_path)
    dataset = load_dataset(data)
    hyp = resolve_hyp_path(spec, spec_path)
    resolve_hyp(hyp, spec.framework)
    resolve_model(spec.model, spec.framework)
    try:
        config = TrialConfig(
            data=data, framework=spec.framework, model=spec.model, hyp=hyp, device=spec.device, **knobs
        )
    except ValidationError as error:
        raise InputError(f"--{validation_message(error).replace('_', '-')}") from None
    probed = {k: getattr(config, k) for k in knobs}
    for name, value in probed.items():
        # The study's front and export only count full configs of its space (other probes only refit
        # its memory model): a probe for it outside that space would be stored for nothing it shows.
        if value not in spec.space.choices(name):
            allowed = ", ".join(str(v) for v in spec.space.choices(name))
            raise InputError(
                f"--{name} {value}: not in the study's space ({allowed}); probe it with --data instead"
            )
    stats = DatasetStats.read(dataset)
    # Every input is checked by now: only a probe that can run opens (or creates) the storage.
    study = open_study(spec, url, create=True)
    worker = WorkerIdentity.here(device=spec.device)
    probes = study_probes(spec, study, dataset, data=data, hyp=hyp, worker=worker.name, stats=stats)
    key = knobs_key(probed)
    stored = probes.stored().get(key)
    if stored is not None and stored.settles(spec.memory_limit):
        return StudyProbe(result=stored.result, number=stored.number, reused=True, url=safe_url(url))
    plan = ProbePlan(knobs=probed, reason="asked for on the command line")
    limit = time_limit_s if time_limit_s is not None else spec.trial_time_limit
    result = probes.run(plan, time_limit_s=limit, on_progress=on_progress)
    if result is None:
        raise InputError("another worker is probing this config for the study now: it will store the result")
    now = probes.stored().get(key)
    number = now.number if now is not None and result.status in ("ok", "memory_limit") else None
    return StudyProbe(result=result, number=number, reused=False, url=safe_url(url))
