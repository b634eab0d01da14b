"""Storages: default choice, heartbeats that fail a silent trial and retry it once, bad URLs."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from search.errors import InputError, StorageError
from search.study._heartbeats import HEARTBEAT_ATTR, fail_stale_trials
from search.study._journal import journal_damage
from search.study._storage import (
    ask,
    check_sql_url,
    database_tables,
    default_storage_url,
    foreign_tables,
    is_concurrent_safe,
    make_storage,
    safe_url,
    storage_file,
    url_beside,
)

from .conftest import ROOT, TINY_STUDY, run_cli, scale_study
from .postgres import PostgresServer


def test_default_storage_is_sqlite_for_one_job_and_a_journal_for_several(tmp_path: Path) -> None:
    assert default_storage_url(tmp_path, "x") == f"sqlite:///{tmp_path.resolve() / 'x.db'}"
    journal = default_storage_url(tmp_path, "x", jobs=2)
    assert journal == f"journal:///{str(tmp_path.resolve() / 'x.journal').lstrip('/')}"
    (tmp_path / "x.journal").write_text("")
    # Once a journal exists, every command (run, report, status) finds the study there.
    assert default_storage_url(tmp_path, "x") == journal
    # ... unless it is empty and a SQLite file holds the study: an empty journal holds no study.
    (tmp_path / "x.db").write_bytes(b"")
    assert default_storage_url(tmp_path, "x").startswith("sqlite:")
    (tmp_path / "x.journal").write_text('{"op_code": 0}\n')
    assert default_storage_url(tmp_path, "x") == journal


def test_storage_file_names_the_file_of_a_file_backed_storage(tmp_path: Path) -> None:
    assert storage_file(f"sqlite:///{tmp_path}/a.db") == tmp_path / "a.db"
    assert storage_file("sqlite:///rel/a.db") == Path.cwd() / "rel/a.db"
    assert storage_file("sqlite+pysqlite:///rel/a.db") == Path.cwd() / "rel/a.db"
    assert storage_file("sqlite:///~/a.db") == Path.cwd() / "~/a.db"  # SQLite expands no "~"
    assert storage_file(f"journal:{tmp_path}/a.journal") == tmp_path / "a.journal"
    assert storage_file("journal:///abs/a.journal") == Path("/abs/a.journal")
    assert storage_file("sqlite://") is None and storage_file("sqlite:///:memory:") is None
    assert storage_file("postgresql://me:pw@db/s") is None


def test_url_beside_reads_a_relative_file_against_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "studies"
    assert url_beside("sqlite:///x.db", folder) == f"sqlite:///{folder.resolve() / 'x.db'}"
    assert (
        url_beside("sqlite:///../x.db?timeout=20", folder)
        == f"sqlite:///{tmp_path.resolve() / 'x.db'}?timeout=20"
    )
    journal = url_beside("journal:runs/x.journal", folder)
    assert journal == f"journal:///{str(folder.resolve() / 'runs' / 'x.journal').lstrip('/')}"
    assert storage_file(journal) == folder.resolve() / "runs" / "x.journal"
    assert url_beside("sqlite+pysqlite:///x.db", folder) == f"sqlite+pysqlite:///{folder.resolve() / 'x.db'}"
    assert (
        url_beside("sqlite:///~/x.db", folder) == f"sqlite:///{Path.home() / 'x.db'}"
    )  # as in its other paths
    # A folder whose name SQLAlchemy would escape still names the same file.
    odd = tmp_path / "a b%c:d"
    assert storage_file(url_beside("sqlite:///x.db", odd)) == odd.resolve() / "x.db"
    # Absolute paths, memory, SQLite URI filenames and servers are left as they are.
    for url in [
        "journal:~/x.journal",  # absolute once "~" is expanded, as journal_path does
        "sqlite:////abs/x.db",
        "journal:///abs/x.journal",
        "sqlite://",
        "sqlite:///:memory:",
        "sqlite:///file:x.db?mode=ro&uri=true",
        "postgresql://me:secret@db:5432/s",
    ]:
        assert url_beside(url, folder) == url


def test_sqlite_is_never_concurrent_safe_whatever_its_driver() -> None:
    assert not is_concurrent_safe("sqlite:///x.db") and not is_concurrent_safe("sqlite+pysqlite:///x.db")
    assert is_concurrent_safe("journal:x.journal") and is_concurrent_safe("postgresql://me@db/s")


def test_safe_url_masks_the_password() -> None:
    assert safe_url("postgresql://me:secret@db:5432/s") == "postgresql://me:***@db:5432/s"
    assert safe_url("sqlite:///a.db") == "sqlite:///a.db"
    assert safe_url("postgresql://me:p@ss@db/s") == "postgresql://me:***@db/s"  # not half of it
    assert safe_url("postgresql://me:p/ss@db/s") == "postgresql://me:***@db/s"
    assert safe_url("postgresql://me@db/s") == "postgresql://me@db/s"
    assert "secret" not in safe_url("postgresql+psycopg2://me:secret@db/s")


@pytest.fixture(params=["journal", "postgresql"])
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "journal":
        return f"journal:{tmp_path / 'study.journal'}"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.new_database()


@pytest.mark.slow
def test_silent_trial_is_failed_after_the_grace_period_and_retried_once(storage_url: str) -> None:
    storage = make_storage(storage_url, heartbeat_interval=1, grace_period=2)
    study = optuna.create_study(storage=storage, study_name="s")
    trial = ask(study)
    trial.suggest_categorical("batch", [4, 8])
    storage.record_heartbeat(trial._trial_id)  # type: ignore[attr-defined]
    fail_stale_trials(study)
    assert study.trials[0].state == optuna.trial.TrialState.RUNNING  # within the grace period

    time.sleep(3.2)  # its worker went silent
    fail_stale_trials(study)
    first, retry = study.trials
    assert first.state == optuna.trial.TrialState.FAIL
    assert retry.state == optuna.trial.TrialState.WAITING and retry.params == first.params
    assert retry.system_attrs["failed_trial"] == first.number

    # The retry is asked by another worker, which dies too: no second retry.
    again = ask(study)
    assert again.number == retry.number and again.params == first.params
    storage.record_heartbeat(again._trial_id)  # type: ignore[attr-defined]  # as a worker does at once
    time.sleep(3.2)
    fail_stale_trials(study)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.FAIL] * 2


def test_a_trial_whose_worker_died_before_its_first_heartbeat_is_failed_and_retried(tmp_path: Path) -> None:
    # Optuna's RDB storage skips a running trial with no heartbeat row, forever: a worker killed
    # right after asking would leave a trial RUNNING that every later run waits for.
    storage = make_storage(f"sqlite:///{tmp_path / 's.db'}", heartbeat_interval=1, grace_period=1)
    study = optuna.create_study(storage=storage, study_name="s")
    trial = ask(study)  # as a worker asks (Optuna warns of heartbeats outside optimize)
    trial.suggest_categorical("batch", [4, 8])
    fail_stale_trials(study)
    assert study.trials[0].state == optuna.trial.TrialState.RUNNING  # within the grace period
    time.sleep(1.5)
    fail_stale_trials(study)
    first, retry = study.trials
    assert first.state == optuna.trial.TrialState.FAIL
    assert retry.state == optuna.trial.TrialState.WAITING and retry.params == first.params


def test_no_trial_is_failed_as_stale_just_after_a_ctrl_z(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The jobs of one `run --jobs` are stopped and continued together: the first to wake found the
    # others' heartbeats as old as the pause, failed their trials and had them trained again.
    from search import _pause

    storage = make_storage(f"journal:{tmp_path / 's.journal'}", heartbeat_interval=1, grace_period=1)
    study = optuna.create_study(storage=storage, study_name="s")
    ask(study).suggest_categorical("batch", [4, 8])  # another job's trial, silent for the pause
    time.sleep(1.5)
    monkeypatch.setattr(_pause, "_resumed_at", time.monotonic())  # this worker was just continued
    fail_stale_trials(study)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.RUNNING]
    time.sleep(1.1)  # a grace period after the continue, every job stopped with it has beaten again
    fail_stale_trials(study)
    assert study.trials[0].state == optuna.trial.TrialState.FAIL


def test_journal_heartbeat_is_a_trial_attribute(tmp_path: Path) -> None:
    storage = make_storage(f"journal:{tmp_path / 'j.journal'}", heartbeat_interval=1, grace_period=2)
    study = optuna.create_study(storage=storage)
    trial = ask(study)  # as a worker asks (Optuna warns of heartbeats outside optimize)
    before = time.time()
    storage.record_heartbeat(trial._trial_id)  # type: ignore[attr-defined]
    assert study.trials[0].system_attrs[HEARTBEAT_ATTR] >= before


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_journal_whose_last_line_is_damaged_is_refused_and_left_as_it_is(tmp_path: Path) -> None:
    from search.errors import StorageError
    from search.study._prepare import open_study
    from search.study._spec import StudySpec

    spec = StudySpec.model_validate({"name": "s", "data": "demo", "memory_limit": "2GiB"})
    journal = tmp_path / "s.journal"
    url = f"journal:///{str(journal).lstrip('/')}"
    open_study(spec, url, create=True)
    # A long record last (longer than one read from the end) is read whole, and is no damage.
    open_study(spec, url, create=True).set_user_attr("long", "x" * 200_000)
    assert journal_damage(journal) is None
    open_study(spec, url, create=True)
    # Optuna would read past the damaged line, then write after it: the journal unreadable from then on.
    journal.write_bytes(journal.read_bytes() + b"garbage{\n")
    before = journal.read_bytes()
    with pytest.raises(StorageError, match="its last line is not an Optuna journal record") as refused:
        open_study(spec, url, create=True)
    assert "remove that line" in str(refused.value) and "\n" not in str(refused.value)
    assert journal.read_bytes() == before
    # A command that only reads still reads it (Optuna skips a damaged last line).
    assert open_study(spec, url, create=False).study_name == "s"
    # A record without its newline, or an empty line an editor left: Optuna would write after both.
    whole = before[: -len(b"garbage{\n")]
    for ending, said in ((whole[:-1], "not whole"), (whole + b"\n", "ends with an empty line")):
        journal.write_bytes(ending)
        with pytest.raises(StorageError, match=said):
            open_study(spec, url, create=True)
        assert journal.read_bytes() == ending


def test_a_journal_url_on_a_file_that_is_no_journal_is_refused_and_left_alone(tmp_path: Path) -> None:
    import sqlite3

    from search.errors import StorageError
    from search.study._prepare import open_study
    from search.study._spec import StudySpec

    spec = StudySpec.model_validate({"name": "s", "data": "demo", "memory_limit": "2GiB"})
    database = tmp_path / "s.db"
    optuna.create_study(study_name="s", storage=f"sqlite:///{database}")
    # A JSON-lines log: its last line would pass as a record, and Optuna would append to it.
    log = tmp_path / "log.jsonl"
    log.write_text('{"epoch": 1}\n{"epoch": 2}\n')
    refusals = {
        database: f"is an SQLite database, not a journal: write sqlite:///{database}",
        log: "is not an Optuna journal (its first line is no journal record)",
    }
    for file, said in refusals.items():
        before = file.read_bytes()
        for create in (False, True):
            with pytest.raises(StorageError, match=re.escape(said)):
                open_study(spec, f"journal:///{str(file).lstrip('/')}", create=create)
        assert file.read_bytes() == before
    # A first write cut short is a damaged journal, told how to mend, not a foreign file.
    cut = tmp_path / "cut.journal"
    cut.write_bytes(b'{"op_code": 0, "worker_id"')
    with pytest.raises(StorageError, match="its last line is not whole"):
        open_study(spec, f"journal:///{str(cut).lstrip('/')}", create=True)
    with sqlite3.connect(database) as connection:  # still the study it was
        assert connection.execute("select study_name from studies").fetchall() == [("s",)]


def test_bad_storage_urls_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        make_storage(f"journal:{tmp_path / 'missing' / 'x.journal'}", heartbeat_interval=1, grace_period=2)
    with pytest.raises(InputError, match="journal:relative/path or journal:///absolute/path"):
        make_storage("journal://host/x", heartbeat_interval=1, grace_period=2)
    with pytest.raises(InputError, match=r"memfront keeps studies in sqlite:.*, not nosuchdb"):
        make_storage("nosuchdb://x", heartbeat_interval=1, grace_period=2)


@pytest.mark.slow
def test_unreachable_storage_and_wrong_credentials_exit_2(
    postgres: PostgresServer, tiny_data: Path, tmp_path: Path
) -> None:
    spec = scale_study(tmp_path, tiny_data, n_trials=1)
    wrong_password = postgres.new_database().replace(":memfront-test-password@", ":not-the-password@")
    cases = {
        wrong_password: "password authentication failed",
        f"postgresql://memfront:pw@127.0.0.1:{_closed_port()}/db": "Connection refused",
        postgres.url("no_such_database"): 'database "no_such_database" does not exist',
    }
    for url, reason in cases.items():
        for command in ("run", "status", "report"):
            done = run_cli(command, str(spec), "--storage", url, timeout=120)
            assert done.returncode == 2, (command, url, done.stderr)
            lines = done.stderr.strip().splitlines()
            assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
            assert lines[0].startswith("memfront: error: storage postgresql://memfront:***@")
            assert reason in lines[0] and "not-the-password" not in lines[0]
    assert not list(tmp_path.glob("*.db")) and not list(tmp_path.glob("*.journal"))  # nothing made instead


_OPEN = """
import sys
import optuna
from search.study._storage import make_storage
storage = make_storage(sys.argv[1], heartbeat_interval=1, grace_period=2)
optuna.create_study(storage=storage, study_name="s", load_if_exists=True)
"""


@pytest.mark.slow
def test_workers_started_at_once_on_an_empty_database_all_open_it(postgres: PostgresServer) -> None:
    # Each creates Optuna's tables; PostgreSQL lets one win and the others retry.
    url = postgres.new_database()
    starts = [
        subprocess.Popen([sys.executable, "-c", _OPEN, url], cwd=ROOT, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    errors = [start.communicate(timeout=120)[1] for start in starts]
    assert [start.returncode for start in starts] == [0] * 4, errors
    storage = make_storage(url, heartbeat_interval=1, grace_period=2)
    assert [s.study_name for s in optuna.get_all_study_summaries(storage)] == ["s"]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://example.com/db", "memfront keeps studies in sqlite:///file.db, journal:file.journal, or a"),
        ("ftp:///x.db", "not ftp"),
        ("sqlite://", "is a database in memory, gone when the command ends: name a file"),
        ("sqlite:///", "is a database in memory"),
        ("sqlite:///:memory:", "is a database in memory"),
        ("mine.db", "storage 'mine.db' is not a storage URL: a file is sqlite:///mine.db"),
    ],
)
def test_a_url_that_keeps_no_study_is_refused_before_anything_opens(url: str, message: str) -> None:
    with pytest.raises(InputError, match=re.escape(message)):
        check_sql_url(url)
    with pytest.raises(InputError, match=re.escape(message)):
        database_tables(url)


def test_a_scheme_whose_driver_is_missing_is_a_storage_error_not_a_traceback() -> None:
    # No MySQL driver is installed here: memfront's one-line error, not the driver's import error.
    with pytest.raises(StorageError, match=r"storage mysql://u:\*\*\*@127.0.0.1:1/db cannot be opened: "):
        database_tables("mysql://u:p@127.0.0.1:1/db")


def test_a_users_own_database_is_not_a_studys(tmp_path: Path) -> None:
    import sqlite3

    own = tmp_path / "own.db"
    with sqlite3.connect(own) as connection:
        connection.execute("create table mine(x)")
    assert foreign_tables(f"sqlite:///{own}") == {"mine"}
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    assert foreign_tables(f"sqlite:///{empty}") == set()
    optuna.create_study(storage=f"sqlite:///{tmp_path / 'study.db'}")
    assert foreign_tables(f"sqlite:///{tmp_path / 'study.db'}") == set()
    assert foreign_tables(f"journal:{tmp_path / 'x.journal'}") == set()


def test_run_refuses_a_users_own_database_and_a_foreign_study_of_the_same_name(
    tiny_data: Path, tmp_path: Path
) -> None:
    import sqlite3

    own = tmp_path / "own.db"
    with sqlite3.connect(own) as connection:
        connection.execute("create table mine(x)")
    study = tmp_path / "tiny.yaml"
    study.write_text(TINY_STUDY.format(data=tiny_data) + "storage: sqlite:///own.db\n")
    done = run_cli("run", str(study), timeout=60)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert "is a database of other tables (mine), not a study's: name an empty or new database" in lines[0]
    read = run_cli("report", str(study), timeout=60)
    assert read.returncode == 2 and "no study named 'tiny'" in read.stderr, read.stderr
    assert foreign_tables(f"sqlite:///{own}") == {"mine"}  # no Optuna table was added
    # A study of the same name that Optuna made with one objective: not memfront's two.
    optuna.create_study(study_name="tiny", storage=f"sqlite:///{tmp_path / 'other.db'}", direction="maximize")
    study.write_text(TINY_STUDY.format(data=tiny_data) + "storage: sqlite:///other.db\n")
    for command in ("run", "report"):
        done = run_cli(command, str(study), timeout=60)
        assert done.returncode == 2, done.stderr
        assert (
            "study 'tiny' in sqlite:///" in done.stderr
            and "is not a memfront study of these objectives" in (done.stderr)
        )
    assert optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path / 'other.db'}").trials == []
