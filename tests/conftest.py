"""Shared fixtures: a tiny real dataset and helpers to run the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from search.data._demo import make_demo_dataset
from search.trial._leftovers import CHILD_TEMP_PREFIX, owned_prefix

from .postgres import PostgresServer

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """No test reads or writes the user's calibration cache (and so none depends on it)."""
    os.environ["MEMFRONT_CACHE_DIR"] = str(tmp_path_factory.mktemp("memfront-cache"))


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 training and 16 validation images of 96 px: enough for a real 1-epoch trial."""
    return make_demo_dataset(tmp_path_factory.mktemp("shapes"), images=16, val_images=16, size=96)


def trainer_processes() -> list[int]:
    """Live trial child processes started by this test session (not by anything else on the machine).

    They inherit the session's private ``MEMFRONT_CACHE_DIR``, which marks them.
    """
    marker = f"MEMFRONT_CACHE_DIR={os.environ.get('MEMFRONT_CACHE_DIR', '')}".encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{name}/cmdline").read_bytes()
            state = Path(f"/proc/{name}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
            environ = Path(f"/proc/{name}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"search.child.trainer" in cmdline and state != b"Z" and marker in environ:
            found.append(int(name))
    return found


def child_temp_folders() -> list[Path]:
    """The temp folders of the trial children this test process started (by their owner's pid in the
    name), not those of anything else running on the machine."""
    return sorted(Path(tempfile.gettempdir()).glob(f"{owned_prefix(CHILD_TEMP_PREFIX)}*"))


def child_hook(folder: Path, monkeypatch: pytest.MonkeyPatch, source: str) -> None:
    """Puts a ``sitecustomize.py`` of ``source`` on the path of every child a trial starts.

    What cannot exist here (a GPU running out, a newer package than installed) is simulated inside
    the real child this way; everything around it stays the real path.
    """
    hooks = folder / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(source)
    monkeypatch.setenv("PYTHONPATH", str(hooks))


def run_cli(*args: str, timeout: float = 600, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Runs ``python -m search ARGS`` as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "search", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd or ROOT,
    )


TINY_STUDY = """\
name: tiny
data: {data}
hyp: demo
epochs: 1
n_trials: 3
memory_limit: 6GiB
sampler: random
seed: 1
space:
  batch: [4, 8]
  imgsz: {{low: 64, high: 96, step: 32}}
  cache: [none, ram]
  workers: [0, 1]
  amp: [false, true]
"""


@pytest.fixture(scope="session")
def tiny_study(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real study of 3 tiny trials in SQLite, run once for the whole session; returns its yaml.

    Tests that only read it (report, plot, export, notebook) share it; tests that add trials copy it.
    """
    folder = tmp_path_factory.mktemp("study")
    spec_path = folder / "tiny.yaml"
    spec_path.write_text(TINY_STUDY.format(data=tiny_data))
    done = run_cli("run", str(spec_path))
    assert done.returncode == 0, done.stderr
    return spec_path


SCALE_STUDY = """\
name: scale
data: {data}
hyp: demo
epochs: 1
n_trials: {n_trials}
memory_limit: 6GiB
sampler: random
seed: 1
heartbeat_interval: 1s
heartbeat_grace: 6s
space:
  batch: [4, 8]
  imgsz: [64, 96]
  cache: [none, ram]
  workers: [0]
"""


def scale_study(folder: Path, data: Path, *, n_trials: int) -> Path:
    """A study of tiny trials with second-scale heartbeats, for several workers; returns its yaml."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "scale.yaml"
    path.write_text(SCALE_STUDY.format(data=data, n_trials=n_trials))
    return path


def start_cli(*args: str) -> subprocess.Popen[str]:
    """Starts ``python -m search ARGS`` in the background, as a user's worker."""
    return subprocess.Popen(
        [sys.executable, "-m", "search", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def children_running_trials(pid: int) -> list[int]:
    """Trial child processes whose parent is ``pid`` (a worker)."""
    found = []
    for child in trainer_processes():
        try:
            fields = Path(f"/proc/{child}/stat").read_bytes().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(child)
    return found


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL server on loopback for the session (see tests/postgres.py)."""
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


def leftovers_of(pid: int) -> list[Path]:
    """Trial folders and child temp folders a worker ``pid`` left in the system temp dir."""
    import tempfile

    temp = Path(tempfile.gettempdir())
    return [*temp.glob(f"memfront-trial-{pid}-*"), *temp.glob(f"mf-{pid}-*")]
