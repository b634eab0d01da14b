"""``search.run_study``: what ``memfront run STUDY`` does, from Python (a notebook, a script).

Read the results with :func:`search.load_study` (:mod:`search.results`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from search.errors import InputError
from search.units import whole_number

if TYPE_CHECKING:
    from search.study._optimize import StudyOutcome

__all__ = ["run_study"]


def run_study(
    path: str | Path,
    *,
    n_trials: int | None = None,
    storage: str | None = None,
    progress: bool = True,
) -> StudyOutcome:
    """Creates or resumes a study and trains until it has ``n_trials`` trainings done (replicates included).

    What ``memfront run STUDY`` does, as one worker: several processes may run it on one storage.
    Interrupting it (Ctrl-C, or the notebook's stop button) stops the current trial cleanly; running
    it again continues.

    Args:
        path: The study file, e.g. ``studies/demo.yaml``.
        n_trials: Overrides the study file's ``n_trials`` (a total across workers).
        storage: An Optuna storage URL overriding the study file's.
        progress: Show a live progress bar and a line per trial (on stderr, or in the notebook).

    Returns:
        How the run ended: trials trained, the stop reason, times, and ``failed`` when it stopped
        because its trainings kept failing (a setup to fix). Read the results with
        :func:`search.load_study`.

    Raises:
        InputError: For a bad study file, dataset, device or limit; nothing is stored then.
        StorageError: If the storage cannot be opened.
    """
    from rich.console import Console

    from search.study._prepare import prepare_study
    from search.study._progress import run_prepared
    from search.study._spec import load_study_spec
    from search.study._storage import quiet_optuna

    study_file = Path(path)
    spec = load_study_spec(study_file)
    if n_trials is not None:
        count = whole_number(n_trials)
        if count is None or count < 1:
            raise InputError(f"n_trials: expected a whole number of at least 1, got {n_trials!r}")
        spec = spec.model_copy(update={"n_trials": count})
    with quiet_optuna():
        prepared = prepare_study(spec, study_file, storage=storage)
        return run_prepared(prepared, console=Console(stderr=True, soft_wrap=True) if progress else None)
