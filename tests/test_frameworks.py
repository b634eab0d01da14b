"""Which framework a study or trial trains with, and what each framework's rules are (fast)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from search.accuracy import Training
from search.errors import InputError
from search.frameworks import FRAMEWORK_NAMES, get_framework, infer_framework, resolve_framework
from search.model._predict import features, loader_workers
from search.results._command import upstream_command, upstream_words
from search.study._spec import StudySpec
from search.trial._config import TrialConfig, resolve_hyp, resolve_model, validation_message


def test_the_model_names_its_framework() -> None:
    assert FRAMEWORK_NAMES == ("yolov5", "ultralytics")
    assert infer_framework("yolo11n.yaml") == "ultralytics"
    assert infer_framework("yolov8s.yaml") == "ultralytics"
    assert infer_framework("yolov5n.yaml") == "yolov5"  # both ship it: yolov5, the default, wins
    assert infer_framework("no-such-model.yaml") == "yolov5"
    assert resolve_framework("ultralytics", None) == ("ultralytics", "yolo11n.yaml")
    assert resolve_framework(None, None) == ("yolov5", "yolov5n.yaml")
    assert resolve_framework("ultralytics", "yolov5n.yaml") == ("ultralytics", "yolov5n.yaml")  # YOLOv5u
    with pytest.raises(InputError, match="framework must be one of yolov5, ultralytics"):
        resolve_framework("keras", None)


def test_a_model_file_is_read_for_its_framework(tmp_path: Path) -> None:
    yolov5_yaml = tmp_path / "mine-v5.yaml"
    yolov5_yaml.write_text(Path(resolve_model("yolov5n.yaml")).read_text())
    anchor_free = tmp_path / "mine-v8.yaml"
    anchor_free.write_text(yaml.safe_dump({"nc": 3, "backbone": [[-1, 1, "Conv", [16, 3, 2]]], "head": []}))
    assert infer_framework(str(yolov5_yaml)) == "yolov5"
    assert infer_framework(str(anchor_free)) == "ultralytics"
    # A checkpoint is a zip whose pickle names the classes that saved it.
    import zipfile

    for name, module in (
        ("v8.pt", b"ultralytics.nn.tasks\nDetectionModel"),
        ("v5.pt", b"models.yolo\nModel"),
    ):
        with zipfile.ZipFile(tmp_path / name, "w") as archive:
            archive.writestr("archive/data.pkl", b"\x80\x02c" + module)
    assert infer_framework(str(tmp_path / "v8.pt")) == "ultralytics"
    assert infer_framework(str(tmp_path / "v5.pt")) == "yolov5"


def test_trial_and_study_resolve_the_same_way(tiny_data: Path) -> None:
    config = TrialConfig(data=str(tiny_data), model="yolo11n.yaml")
    assert config.framework == "ultralytics"
    assert TrialConfig(data=str(tiny_data), framework="ultralytics").model == "yolo11n.yaml"
    assert TrialConfig(data=str(tiny_data)).framework == "yolov5"
    with pytest.raises(ValidationError) as error:
        TrialConfig(data=str(tiny_data), framework="keras")
    assert validation_message(error.value) == "framework: must be one of yolov5, ultralytics: 'keras'"
    spec = StudySpec.model_validate(
        {"name": "s", "data": "demo", "memory_limit": "2GiB", "framework": "ultralytics"}
    )
    assert (spec.framework, spec.model) == ("ultralytics", "yolo11n.yaml")
    spec = StudySpec.model_validate(
        {"name": "s", "data": "demo", "memory_limit": "2GiB", "model": "yolov8n.yaml"}
    )
    assert spec.framework == "ultralytics"


def test_shipped_models_are_found_without_downloading() -> None:
    assert resolve_model("yolo11n.yaml", "ultralytics") == "yolo11n.yaml"  # ultralytics keeps the scale
    assert Path(resolve_model("yolov5s.yaml", "yolov5")).is_file()
    with pytest.raises(InputError, match="not found"):
        resolve_model("yolo11n.pt", "ultralytics")
    with pytest.raises(InputError, match="one of ultralytics's models"):
        resolve_model("yolo99n.yaml", "ultralytics")


def test_hyperparameters_in_each_frameworks_format(tmp_path: Path) -> None:
    assert resolve_hyp("demo", "ultralytics") != resolve_hyp("demo", "yolov5")
    get_framework("ultralytics").check_hyp(Path(str(resolve_hyp("demo", "ultralytics"))))
    # yolov5's loss gains (obj, anchor_t) are not ultralytics settings: said before anything runs.
    with pytest.raises(
        InputError, match="not ultralytics train settings: anchor_t, fl_gamma, iou_t, obj, obj_pw"
    ):
        resolve_hyp(str(resolve_hyp("demo", "yolov5")), "ultralytics")
    with pytest.raises(InputError, match="yolov5 hyp yaml"):
        resolve_hyp(str(resolve_hyp("demo", "ultralytics")), "yolov5")


def test_each_framework_starts_its_own_dataloader_workers() -> None:
    assert loader_workers(8, 16, cpus=2) == (2, 2)  # yolov5: capped at the CPUs
    assert loader_workers(4, 1, cpus=8) == (0, 2)  # yolov5: no worker for a batch of 1
    # ultralytics' trainer runs none on a CPU, whatever was asked.
    assert loader_workers(8, 16, cpus=16, framework="ultralytics", device="cpu") == (0, 0)
    assert loader_workers(4, 16, cpus=16, framework="ultralytics", device="0") == (4, 8)
    # Its CPU share is per visible GPU, and its trial's child leaves one visible (only_visible_device).
    assert loader_workers(8, 16, cpus=16, framework="ultralytics", device="3") == (8, 16)


def test_the_memory_model_sees_no_worker_cost_where_none_runs(tiny_data: Path) -> None:
    from search.data._dataset import load_dataset
    from search.model._predict import DatasetStats

    stats = DatasetStats.read(load_dataset(tiny_data))
    knobs = {"batch": 8, "imgsz": 64, "cache": "ram", "workers": 2, "stats": stats}
    on_yolov5 = features(**knobs, framework="yolov5")
    on_ultralytics = features(**knobs, framework="ultralytics", device="cpu")
    assert on_yolov5["worker_processes"] > 0 and on_yolov5["worker_cache_copies"] > 0
    assert on_ultralytics["worker_processes"] == 0 and on_ultralytics["worker_cache_copies"] == 0
    assert on_ultralytics["ram_cache"] == on_yolov5["ram_cache"]


def test_export_prints_each_frameworks_own_command() -> None:
    options = {
        "data": "/d/data.yaml", "model": "yolo11n.yaml", "epochs": 3, "batch": 16, "imgsz": 320,
        "cache": "none", "workers": 2, "amp": True, "device": "0", "seed": 1,
    }  # fmt: skip
    command = shlex.split(upstream_command({**options, "framework": "ultralytics", "hyp": "demo"}))
    # The allocator setting every trial ran with comes first: the memory measured is that run's.
    assert command[:4] == ["MALLOC_MMAP_THRESHOLD_=1048576", "yolo", "detect", "train"]
    settings = dict(part.split("=", 1) for part in command[4:])
    assert settings == {
        "data": "/d/data.yaml", "model": "yolo11n.yaml", "epochs": "3", "batch": "16", "imgsz": "320",
        "workers": "2", "device": "0", "seed": "1", "cache": "False", "amp": "True",
        "cfg": str(resolve_hyp("demo", "ultralytics")), "plots": "False",
    }  # fmt: skip
    yolov5 = shlex.split(upstream_command({**options, "model": "yolov5n.yaml", "framework": "yolov5"}))
    assert yolov5[:3] == ["MALLOC_MMAP_THRESHOLD_=1048576", "yolov5", "train"]
    assert "--cfg" in yolov5 and "--cache" not in yolov5
    # Plots off, as every trial measured (they need memory of their own), unless asked for.
    assert "--noplots" in yolov5
    drawn = {**options, "model": "yolov5n.yaml", "framework": "yolov5", "plots": True}
    assert "--noplots" not in shlex.split(upstream_command(drawn))
    drawn = {**options, "framework": "ultralytics", "plots": True}
    assert "plots=True" in shlex.split(upstream_command(drawn))


def test_ultralytics_counts_the_cache_as_an_accuracy_knob() -> None:
    # Its mosaic draws partners from the whole dataset with cache=ram, from a buffer otherwise.
    from search.study._space import DEFAULT_ROLES, KnobRoles

    assert KnobRoles.of("yolov5") == DEFAULT_ROLES
    assert DEFAULT_ROLES.accuracy == ("batch", "imgsz", "amp") and DEFAULT_ROLES.system == (
        "cache",
        "workers",
    )
    roles = KnobRoles.of("ultralytics")
    assert roles.accuracy == ("batch", "imgsz", "cache", "amp") and roles.system == ("workers",)


def _trainings() -> list[Training]:
    from .synthetic import GIB, knobs

    return [
        Training(number=0, config=knobs(16, 128, "none"), seed=0, accuracy=0.30, peak_host_bytes=1.1 * GIB),
        Training(number=1, config=knobs(16, 128, "ram"), seed=0, accuracy=0.34, peak_host_bytes=1.3 * GIB),
    ]


def test_trainings_differing_only_in_the_cache_are_one_config_for_yolov5_two_for_ultralytics() -> None:
    from search.accuracy import estimate_accuracy
    from search.study._space import KnobRoles

    (yolov5,) = estimate_accuracy(_trainings()).configs.values()
    assert [s.config["cache"] for s in yolov5.systems] == ["none", "ram"]
    ultralytics = estimate_accuracy(_trainings(), roles=KnobRoles.of("ultralytics"))
    assert set(ultralytics.configs) == {(16, 128, "none", False), (16, 128, "ram", False)}
    assert {e.knobs["cache"] for e in ultralytics.configs.values()} == {"none", "ram"}
    assert ultralytics.text((16, 128, "ram", False)) == "batch 16, imgsz 128, cache ram, amp off"


def test_the_planner_varies_only_the_frameworks_system_knobs() -> None:
    from search.accuracy import estimate_accuracy
    from search.study._replicates import Running, plan_next
    from search.study._space import KnobRoles

    choices = {"batch": [16], "imgsz": [128], "cache": ["none", "ram"], "workers": [0, 1], "amp": [False]}
    trainings = _trainings()
    attempts = [Running(config=t.config, seed=t.seed, feasible=True) for t in trainings]
    # yolov5: two replicates of one accuracy config (the RAM check shifts the stream at workers 0),
    # the only one in the space: nothing left can change the answer.
    assert plan_next(estimate_accuracy(trainings), attempts, choices=choices, first_seed=0) is None
    # ultralytics: two accuracy configs, noise unknown: the best is replicated, keeping its cache and
    # taking the system setting it was not measured with (workers, its only system knob).
    roles = KnobRoles.of("ultralytics")
    plan = plan_next(estimate_accuracy(trainings, roles=roles), attempts, choices=choices, first_seed=0)
    assert plan is not None and plan.seed == 1
    assert plan.fixed == {"cache": "ram", "workers": 1}


def test_a_settings_yaml_may_not_set_what_the_trial_sets(tmp_path: Path) -> None:
    settings = tmp_path / "mine.yaml"
    settings.write_text(yaml.safe_dump({"lr0": 0.01, "epochs": 300, "model": "yolov8x.yaml"}))
    with pytest.raises(InputError, match="set by the study or trial, not by a settings yaml: epochs, model"):
        resolve_hyp(str(settings), "ultralytics")


def test_only_detection_models_for_ultralytics_and_one_device_for_both(tiny_data: Path) -> None:
    with pytest.raises(InputError, match="one of ultralytics's models"):
        resolve_model("yolov8n-seg.yaml", "ultralytics")
    with pytest.raises(ValidationError) as error:
        TrialConfig(data=str(tiny_data), framework="ultralytics", device="0,1")
    assert validation_message(error.value).startswith(
        "device: 0,1: an ultralytics trial trains on one device"
    )
    assert TrialConfig(data=str(tiny_data), framework="ultralytics", device="cuda:0").device == "cuda:0"
    # yolov5's DataParallel would spread a trial over GPUs that are measured and capped on one.
    with pytest.raises(ValidationError, match="a yolov5 trial trains on one device"):
        TrialConfig(data=str(tiny_data), device="0,1")
    with pytest.raises(ValidationError):
        StudySpec.model_validate(
            {"name": "s", "data": "demo", "memory_limit": "2GiB", "framework": "ultralytics", "device": "0,1"}
        )


def test_a_yolov5_checkpoint_naming_its_git_remote_is_still_yolov5s(tmp_path: Path) -> None:
    import zipfile

    with zipfile.ZipFile(tmp_path / "v5.pt", "w") as archive:
        archive.writestr(
            "archive/data.pkl", b"\x80\x02cmodels.yolo\nModel\nhttps://github.com/ultralytics/yolov5"
        )
    assert infer_framework(str(tmp_path / "v5.pt")) == "yolov5"


def test_yolov5_calibrations_keep_their_key_and_ultralytics_gets_its_own() -> None:
    from search.model._calibration import calibration_key

    yolov5 = calibration_key("yolov5n.yaml", "cpu")
    assert (
        yolov5.startswith("yolov5n-cpu-")
        and calibration_key("yolov5n.yaml", "cpu", framework="yolov5") == yolov5
    )
    ultralytics = calibration_key("yolov5n.yaml", "cpu", framework="ultralytics")
    assert ultralytics.startswith("ultralytics-yolov5n-cpu-") and ultralytics != "ultralytics-" + yolov5


def test_a_cpu_study_of_ultralytics_searches_no_worker_count() -> None:
    from search.study._space import effective_space

    spec = StudySpec.model_validate(
        {"name": "s", "data": "demo", "memory_limit": "2GiB", "framework": "ultralytics",
         "space": {"workers": {"low": 0, "high": 2}}}
    )  # fmt: skip
    space = effective_space(spec, cpus=4)
    assert space.choices["workers"] == [0] and "workers" not in space.searched
    assert "workers fixed at 0: ultralytics starts no dataloader worker on cpu" in space.notes
    yolov5 = effective_space(spec.model_copy(update={"framework": "yolov5"}), cpus=4)
    assert yolov5.choices["workers"] == [0, 1, 2]


def test_a_dropped_ram_cache_counts_as_the_cache_that_ran() -> None:
    # The framework's own RAM check dropped the cache: the training ran (and measured) without it.
    from search.accuracy import trainings_of
    from search.study._stored import read_trials

    from .synthetic import GIB, knobs, stored_trial

    frozen = stored_trial(
        config=knobs(16, 128, "ram"), values=[0.3, 1.2 * GIB], violation=-1.0, cache_used="none"
    )
    frozen.user_attrs["record"]["used"]["cache_dropped"] = True
    (training,) = trainings_of(read_trials([frozen]), accuracy="map50_95")
    assert training.config["cache"] == "none"
    kept = stored_trial(config=knobs(16, 128, "ram"), values=[0.3, 1.2 * GIB], violation=-1.0)
    (training,) = trainings_of(read_trials([kept]), accuracy="map50_95")
    assert training.config["cache"] == "ram"


def test_the_exported_command_carries_the_allocator_setting_the_trials_ran_with(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    options = {"data": "/d/data.yaml", "model": "yolov5n.yaml", "epochs": 1, "batch": 8, "imgsz": 64,
               "cache": "none", "workers": 0, "amp": False, "device": "cpu", "seed": 0}  # fmt: skip
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "262144")  # the user's own: every child kept it
    assert shlex.split(upstream_command(options))[0] == "MALLOC_MMAP_THRESHOLD_=262144"


@pytest.mark.parametrize(
    ("framework", "base"), [("yolov5", "its package folder"), ("ultralytics", "the working directory")]
)
def test_the_upstream_line_warns_of_a_relative_data_path(tmp_path: Path, framework: str, base: str) -> None:
    # memfront reads a data yaml's relative paths against the yaml's folder; neither framework does.
    data = tmp_path / "data.yaml"

    def said(content: str) -> bool:
        data.write_text(f"{content}names: [a]\n")
        return f"relative paths against {base}" in upstream_words({"data": str(data), "framework": framework})

    assert said("path: .\ntrain: train.txt\nval: val.txt\n")
    assert not said(f"path: {tmp_path}\ntrain: train.txt\nval: val.txt\n")
    assert not said(f"path: .\ntrain: {tmp_path}/train.txt\nval: {tmp_path}/val.txt\n")
    # No path: yolov5 takes its package folder, ultralytics the yaml's folder (as memfront).
    assert said("train: train.txt\nval: val.txt\n") == (framework == "yolov5")
