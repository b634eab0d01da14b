"""What a stored study accepts from its study file on a later run (synthetic studies, no training)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from search.errors import InputError
from search.study._prepare import open_study, record_files
from search.study._spec import StudySpec

from .synthetic import GIB, knobs, stored_trial


def _spec(space: dict[str, object]) -> StudySpec:
    return StudySpec.model_validate({"name": "s", "data": "demo", "memory_limit": 2 * GIB, "space": space})


@pytest.fixture
def url(tmp_path: Path) -> str:
    """A study whose trials sampled batch from [4, 8, 16, 32] and imgsz from 64-640 by 32."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = open_study(
        _spec({"batch": [4, 8, 16, 32], "imgsz": {"low": 64, "high": 640, "step": 32}}), url, create=True
    )
    study.add_trial(stored_trial(config=knobs(8, 96), values=[0.3, GIB], violation=-GIB))
    return url


def test_an_integer_range_may_move(url: str) -> None:
    open_study(
        _spec({"batch": [4, 8, 16, 32], "imgsz": {"low": 96, "high": 320, "step": 32}}), url, create=True
    )


@pytest.mark.parametrize(
    ("space", "said"),
    [
        ({"batch": [8, 16]}, "sampled batch from [4, 8, 16, 32], the study file now says [8, 16]"),
        (
            {"imgsz": [64, 128]},
            "sampled imgsz from {low: 64, high: 640, step: 32}, the study file now says [64, 128]",
        ),
    ],
)
def test_other_choices_are_refused_in_one_line(url: str, space: dict[str, object], said: str) -> None:
    full = {"batch": [4, 8, 16, 32], "imgsz": {"low": 64, "high": 640, "step": 32}, **space}
    with pytest.raises(InputError, match="rename the study") as refused:
        open_study(_spec(full), url, create=True)
    assert said in str(refused.value) and "\n" not in str(refused.value)


def test_a_command_that_only_reads_is_not_refused(url: str) -> None:
    open_study(_spec({"batch": [8, 16]}), url, create=False)


SPACE = {"batch": [4, 8, 16, 32], "imgsz": {"low": 64, "high": 640, "step": 32}}


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"epochs": 2}, "trained with epochs 5, the study file now says epochs 2"),
        (
            {"model": "yolov5s.yaml"},
            "trained with model yolov5n.yaml, the study file now says model yolov5s.yaml",
        ),
        ({"demo_images": 64}, "trained with demo_images 256, the study file now says demo_images 64"),
        (
            {"data": "d/data.yaml", "hyp": "h.yaml"},
            "trained with data demo, hyp none, the study file now says",
        ),
        (
            {"train_images": 1_200_000},
            "trained with train_images none, the study file now says train_images 1200000",
        ),
        (
            {"gpu_memory_limit": "8GiB"},
            "trained with gpu_memory_limit none, the study file now says gpu_memory_limit 8.00 GiB",
        ),
    ],
)
def test_a_changed_setup_is_refused_by_every_command(url: str, change: dict[str, object], said: str) -> None:
    # Its trainings' accuracy and memory hold for their data, model, hyp, epochs and subset only.
    spec = StudySpec.model_validate({**_spec(SPACE).model_dump(), **change})
    for create in (True, False):
        with pytest.raises(InputError, match="rename the study") as refused:
            open_study(spec, url, create=create)
        assert said in str(refused.value) and "\n" not in str(refused.value)


def test_a_model_file_beside_the_study_file_is_the_same_setup_wherever_the_checkout_is(
    tmp_path: Path,
) -> None:
    # The study file reader makes a model file's path absolute: a moved checkout, or another host's.
    from search.study._spec import load_study_spec

    url = f"sqlite:///{tmp_path / 'm.db'}"
    for checkout in ("a", "b"):
        folder = tmp_path / checkout
        folder.mkdir()
        (folder / "mine.yaml").write_text("nc: 1\n")
        (folder / "s.yaml").write_text("name: s\ndata: demo\nmemory_limit: 2GiB\nmodel: mine.yaml\n")
        study = open_study(load_study_spec(folder / "s.yaml"), url, create=True)
        if not study.trials:  # a trained study: its setup is held to
            study.add_trial(
                optuna.trial.create_trial(state=optuna.trial.TrialState.COMPLETE, values=[0.3, GIB])
            )


def test_what_a_run_may_change_is_not_refused(url: str) -> None:
    changed = {"n_trials": 30, "timeout": 600, "seed": 3, "device": "cpu", "sampler": "random"}
    open_study(StudySpec.model_validate({**_spec(SPACE).model_dump(), **changed}), url, create=True)


def test_a_study_stored_without_its_setup_takes_the_files_next(tmp_path: Path) -> None:
    # Studies before 2026-12-07 stored no setup: the next run stores its own, and holds to it.
    url = f"sqlite:///{tmp_path / 'old.db'}"
    study = open_study(_spec(SPACE), url, create=True)
    study.add_trial(stored_trial(config=knobs(8, 96), values=[0.3, GIB], violation=-GIB))
    study._storage.set_study_user_attr(study._study_id, "setup", None)
    resumed = StudySpec.model_validate({**_spec(SPACE).model_dump(), "epochs": 2})
    open_study(resumed, url, create=True)
    with pytest.raises(InputError, match="trained with epochs 2"):
        open_study(_spec(SPACE), url, create=True)


def test_one_study_file_run_against_two_storages_writes_two_sets_of_record_files(tmp_path: Path) -> None:
    spec, study_file = _spec({"batch": [4, 8]}), tmp_path / "s.yaml"
    first = open_study(spec, f"sqlite:///{tmp_path / 'a.db'}", create=True)
    second = open_study(spec, f"sqlite:///{tmp_path / 'b.db'}", create=True)
    paths = {record_files(spec, study_file, study).path(0) for study in (first, second)}
    assert len(paths) == 2 and {path.parent for path in paths} == {tmp_path / "s.records"}
    reopened = open_study(spec, f"sqlite:///{tmp_path / 'a.db'}", create=True)  # a resumed run
    assert record_files(spec, study_file, reopened).path(0) == record_files(spec, study_file, first).path(0)
