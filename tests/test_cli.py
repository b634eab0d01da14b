"""The command line as a user runs it: real subprocesses, real trials."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from search.cli._app import _os_error_line
from search.trial._outcome import ChildEvents

from .conftest import ROOT, TINY_STUDY, run_cli, trainer_processes

REQUIRED_KEYS = {
    "status",
    "map50",
    "map50_95",
    "fitness",
    "peak_host_bytes",
    "peak_gpu_bytes",
    "epoch_seconds",
    "requested",
    "used",
    "epochs",
    "memory",
}


def test_parent_side_never_imports_torch_or_yolov5() -> None:
    code = (
        "import sys, search, search.cli._app, search.trial._supervisor, search.measure._memory;"
        "bad = [m for m in ('torch', 'yolov5') if m in sys.modules]; print(bad); sys.exit(bool(bad))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
def test_trial_command_prints_summary_and_writes_json(tiny_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    done = run_cli(
        "trial",
        "--data",
        str(tiny_data),
        "--batch",
        "8",
        "--imgsz",
        "64",
        "--epochs",
        "1",
        "--cache",
        "ram",
        "--workers",
        "1",
        "--amp",
        "off",
        "--memory-limit",
        "8GiB",
        "--time-limit",
        "5m",
        "--json",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    assert "status" in done.stderr and "mAP50-95" in done.stderr and "peak host memory" in done.stderr
    record = json.loads(out.read_text())
    assert set(record) >= REQUIRED_KEYS
    assert record["status"] == "ok"
    assert {"vmhwm_bytes", "fast_hz", "series"} <= set(record["memory"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "missing.yaml"], "data yaml not found"),
        (["--batch", "0"], "--batch"),
        (["--epochs", "-1"], "--epochs"),
        (["--cache", "gpu"], "--cache"),
        (["--memory-limit", "lots"], "--memory-limit"),
        (["--time-limit", "soon"], "--time-limit"),
        (["--amp", "maybe"], "--amp"),
        (["--model", "nowhere.pt"], "not found"),
        (["--model", "yolov5n.txt"], "model must be"),
        (["--device", "gpu"], "device 'gpu': expected cpu, a CUDA index such as 0"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tiny_data: Path, args: list[str], message: str) -> None:
    full = ["trial", "--data", str(tiny_data), *args] if args[0] != "--data" else ["trial", *args]
    done = run_cli(*full, timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("options", "flags", "message"),
    [
        ("batchsize: 4\n", [], "{config}: batchsize: unknown key"),
        ("batch: -4\n", [], "{config}: batch: Input should be greater than 0"),
        ("batch: 4\n", ["--batch", "0"], "--batch: Input should be greater than 0"),  # the flag's
        ("1: 2\n", [], "{config}: expected a mapping of train options (data, batch, imgsz, ...)"),
    ],
)
def test_a_bad_train_config_names_its_file_and_key(
    tiny_data: Path, tmp_path: Path, options: str, flags: list[str], message: str
) -> None:
    config = tmp_path / "best.yaml"
    config.write_text(f"data: {tiny_data}\n{options}")
    done = run_cli("train", "--config", str(config), *flags, timeout=60)
    assert done.returncode == 2 and done.stderr == f"memfront: error: {message.format(config=config)}\n"


def test_a_train_config_without_data_or_a_folder_for_one_says_so(tmp_path: Path) -> None:
    config = tmp_path / "best.yaml"
    config.write_text("batch: 8\nimgsz: 64\n")
    done = run_cli("train", "--config", str(config), timeout=60)
    assert (
        done.returncode == 2
        and done.stderr == f"memfront: error: {config}: no data: give data: in it, or --data\n"
    )
    folder = run_cli("train", "--config", str(tmp_path), timeout=60)
    assert (
        folder.returncode == 2
        and folder.stderr == f"memfront: error: --config: {tmp_path} is a folder, not a file\n"
    )


def _in_training(cli_pid: int) -> bool:
    """Whether the trial that command ``cli_pid`` runs has written its training phase."""
    for path in Path(tempfile.gettempdir()).glob(f"memfront-trial-{cli_pid}-*/events.jsonl"):
        events = ChildEvents(path)
        events.poll()
        if any(event.get("phase") == "training" for event in events.of("phase")):
            return True
    return False


@pytest.mark.slow
def test_ctrl_c_stops_the_trial_and_leaves_nothing(tiny_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    started = time.time()
    cli = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "search",
            "trial",
            "--data",
            str(tiny_data),
            "--imgsz",
            "64",
            "--epochs",
            "50",
            "--workers",
            "1",
            "--json",
            str(out),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Wait until the trial trains with its dataloader worker, so that Ctrl-C lands mid-training with a
    # whole tree: yolov5's label scan forks a short-lived pool before that, which a count of processes
    # alone mistook for the worker (and found gone when it looked again). A fresh CI machine reads
    # torch from a cold disk: start-up alone can take minutes there.
    deadline = time.monotonic() + 400
    training = False
    while not training and cli.poll() is None and time.monotonic() < deadline:
        training = _in_training(cli.pid) and len(trainer_processes()) >= 2
        time.sleep(0.1)
    if not training:
        cli.kill()
        _, stderr = cli.communicate(timeout=30)
        raise AssertionError(f"no dataloader worker came up (exit {cli.returncode}): {stderr[-2000:]}")
    time.sleep(1)
    cli.send_signal(signal.SIGINT)
    _, stderr = cli.communicate(timeout=30)
    assert cli.returncode == 130, stderr
    assert json.loads(out.read_text())["status"] == "interrupted"
    assert trainer_processes() == []
    # No trial or child folder of that command's (its pid names them), and no multiprocessing folder
    # made since it started.
    temp = Path(tempfile.gettempdir())
    made = [*temp.glob(f"memfront-trial-{cli.pid}-*"), *temp.glob(f"mf-{cli.pid}-*")]
    made += [p for p in temp.glob("pymp-*") if p.stat().st_mtime >= started]
    assert made == []


@pytest.mark.slow
def test_a_closed_terminal_stops_a_training_as_ctrl_c_does_and_keeps_its_weights(
    tiny_data: Path, tmp_path: Path
) -> None:
    # SIGHUP (a closed terminal, a dropped SSH session) used to kill memfront outright: its trial's
    # weights stayed in the temp folder, for the next trial's clean-up of dead workers to remove.
    cli = subprocess.Popen(
        [sys.executable, "-m", "search", "train", "--data", str(tiny_data), "--imgsz", "64",
         "--epochs", "300", "--project", str(tmp_path / "runs"), "--name", "exp"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # As from a terminal: a test session started with nohup would hand down SIGHUP ignored.
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL),
    )  # fmt: skip
    deadline = time.monotonic() + 400
    temp = Path(tempfile.gettempdir())
    while cli.poll() is None and time.monotonic() < deadline:
        if list(temp.glob(f"memfront-trial-{cli.pid}-*/run/weights/last.pt")):
            break  # an epoch ended: there are weights to keep
        time.sleep(0.2)
    cli.send_signal(signal.SIGHUP)
    try:
        _, stderr = cli.communicate(timeout=60)
    finally:
        if cli.poll() is None:  # never leave a 300-epoch training to the tests after this one
            cli.send_signal(signal.SIGINT)
            cli.communicate(timeout=60)
    assert cli.returncode == 130, stderr
    assert (tmp_path / "runs" / "exp" / "weights" / "last.pt").is_file(), stderr
    assert trainer_processes() == []
    assert [*temp.glob(f"memfront-trial-{cli.pid}-*"), *temp.glob(f"mf-{cli.pid}-*")] == []


def test_output_paths_are_checked_before_any_work(tiny_data: Path, tmp_path: Path) -> None:
    study = tmp_path / "s.yaml"
    study.write_text(TINY_STUDY.format(data=tiny_data))
    missing = str(tmp_path / "missing" / "out")
    for args in (
        ["trial", "--data", str(tiny_data), "--json", missing],
        ["train", "--data", str(tiny_data), "--json", missing],
        ["report", str(study), "--csv", missing],
        ["report", str(study), "--json", str(tmp_path)],
        ["plot", str(study), "-o", missing],
        ["export", str(study), "--max-memory", "1GiB", "-o", missing],
        ["predict", "--data", str(tiny_data), "--json", missing],
    ):
        done = run_cli(*args, timeout=60)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1, (args, done.stderr)
        assert ("does not exist" in lines[0] or "is a folder" in lines[0]) and args[-2] in lines[0]
    # Refused while parsing: no trial started, no storage opened.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.yaml"]
    blocked = tmp_path / "file"
    blocked.write_text("")
    done = run_cli("plot", str(study), "-o", str(blocked / "front.png"), timeout=60)
    assert done.returncode == 2 and done.stderr.strip().endswith(f"{blocked} is a file, not a folder")
    done = run_cli("train", "--data", str(tiny_data), "--project", str(blocked / "runs"), timeout=60)
    assert done.returncode == 2 and done.stderr.startswith("memfront: error: --project: cannot create")


def test_demo_data_command(tmp_path: Path) -> None:
    done = run_cli("demo-data", str(tmp_path / "shapes"), "--images", "4", "--size", "64")
    assert done.returncode == 0
    assert Path(done.stdout.strip()).name == "data.yaml"
    assert len(list((tmp_path / "shapes" / "images" / "train").iterdir())) == 4
    bad = run_cli("demo-data", str(tmp_path / "x"), "--images", "0")
    assert bad.returncode == 2 and bad.stderr == "memfront: error: images must be positive, got 0\n"
    (tmp_path / "list.yaml").write_text("")
    on_a_file = run_cli("demo-data", str(tmp_path / "list.yaml"), "--images", "4")
    assert on_a_file.returncode == 2 and on_a_file.stderr.strip().endswith(
        "list.yaml is a file, not a folder"
    )
    under_a_file = run_cli("demo-data", str(tmp_path / "list.yaml" / "d"), "--images", "4")
    assert under_a_file.returncode == 2 and len(under_a_file.stderr.strip().splitlines()) == 1
    assert "cannot write the dataset" in under_a_file.stderr
    # An existing dataset is never overwritten (same names, another kind of image), nor a huge one made.
    again = run_cli("demo-data", str(tmp_path / "shapes"), "--images", "2")
    assert again.returncode == 2 and again.stderr.strip().endswith(
        "shapes is not empty: give a new or empty folder"
    )
    assert len(list((tmp_path / "shapes" / "images" / "train").iterdir())) == 4
    huge = run_cli("demo-data", str(tmp_path / "huge"), "--size", "100000", "--images", "1")
    assert huge.returncode == 2 and "--size: images of 16 to 4096 pixels a side, not 100000" in huge.stderr


def test_plot_help_lists_every_format_it_writes() -> None:
    done = run_cli("plot", "--help", timeout=60)
    assert done.returncode == 0
    for suffix in (".html", ".png", ".svg", ".pdf"):  # each a format write_plot writes
        assert suffix in done.stdout


def test_a_mistyped_command_is_one_line_with_one_suggestion() -> None:
    done = run_cli("reprot", "studies/demo.yaml", timeout=60)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "Did you mean 'report'" in lines[0]
    assert lines[0].count("Did you mean") == 1


@pytest.mark.slow
@pytest.mark.parametrize("command", ["trial", "train", "probe", "predict", "calibrate"])
def test_a_device_this_machine_lacks_is_refused_before_anything_starts(tiny_data: Path, command: str) -> None:
    # No GPU here: CUDA device 7 exists on no machine of this project's.
    data = [] if command == "calibrate" else ["--data", str(tiny_data)]
    done = run_cli(command, *data, "--device", "7", timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert "device 7: CUDA device 7 does not exist here" in lines[0]


@pytest.mark.parametrize("command", ["trial", "train", "probe"])
def test_a_missing_data_yaml_is_the_only_line_no_bar_before_it(command: str, tmp_path: Path) -> None:
    done = run_cli(command, "--data", "/nonexistent/data.yaml", timeout=60, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr == "memfront: error: data yaml not found: /nonexistent/data.yaml\n"
    assert list(tmp_path.iterdir()) == []  # train made no runs/ folder for it


def test_a_refusal_of_the_system_reads_file_first_without_pythons_errno() -> None:
    assert _os_error_line(PermissionError(13, "Permission denied", "out.csv")) == "out.csv: Permission denied"
    assert _os_error_line(OSError(28, "No space left on device")) == "No space left on device"
