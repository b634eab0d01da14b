"""A search study: its definition, space, storage, workers and the search loop (``search.run_study``).

What a trial stores in Optuna is :mod:`search.study._stored`'s alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from search._lazy import lazy_exports

if TYPE_CHECKING:
    from search.study._optimize import StudyOutcome, run_worker
    from search.study._prepare import PreparedStudy, open_study, prepare_study
    from search.study._run import run_study
    from search.study._space import KNOBS, EffectiveSpace, KnobRoles, effective_space
    from search.study._spec import StudySpec, load_study_spec
    from search.study._stored import Status, StoredTrial, read_trial, read_trials

__all__ = [
    "KNOBS",
    "EffectiveSpace",
    "KnobRoles",
    "PreparedStudy",
    "Status",
    "StoredTrial",
    "StudyOutcome",
    "StudySpec",
    "effective_space",
    "load_study_spec",
    "open_study",
    "prepare_study",
    "read_trial",
    "read_trials",
    "run_study",
    "run_worker",
]
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "StudyOutcome": "search.study._optimize",
        "run_worker": "search.study._optimize",
        "PreparedStudy": "search.study._prepare",
        "open_study": "search.study._prepare",
        "prepare_study": "search.study._prepare",
        "run_study": "search.study._run",
        "KNOBS": "search.study._space",
        "EffectiveSpace": "search.study._space",
        "KnobRoles": "search.study._space",
        "effective_space": "search.study._space",
        "StudySpec": "search.study._spec",
        "load_study_spec": "search.study._spec",
        "Status": "search.study._stored",
        "StoredTrial": "search.study._stored",
        "read_trial": "search.study._stored",
        "read_trials": "search.study._stored",
    },
)
