"""Where a study lives: SQLite for one local worker, a journal file for several, PostgreSQL for many machines.

Every storage made here has heartbeats (:mod:`search.study._heartbeats`): a running trial whose
worker falls silent is failed by the other workers and its configuration retried once.

Storage URLs: ``sqlite:///path.db``, ``postgresql://user:password@host:port/db`` (any SQLAlchemy URL
Optuna's RDB storage accepts) and ``journal:path/to/file.journal`` (or ``journal:///absolute/path``).
A relative file path is relative to the working directory on the command line and to the study file's
folder in a study file (:func:`url_beside`), as every other path of a study file is.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import math
import os
import random
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy

from search.errors import InputError, StorageError
from search.study._heartbeats import HeartbeatJournalStorage, HeartbeatRDBStorage, retry_lost_trial
from search.study._journal import journal_holds_records

__all__ = [
    "StorageClock",
    "ask",
    "check_sql_url",
    "database_tables",
    "default_storage_url",
    "error_line",
    "foreign_tables",
    "holds_optuna_tables",
    "is_concurrent_safe",
    "journal_path",
    "make_storage",
    "quiet_optuna",
    "safe_url",
    "storage_clock",
    "storage_file",
    "url_beside",
]

# A PostgreSQL host that does not answer must fail a command in seconds, not after TCP's minutes.
_CONNECT_TIMEOUT_S = 10
_SCHEMA_ATTEMPTS = 5


def safe_url(url: str) -> str:
    """The URL with its password masked, for messages."""
    if "://" not in url or url.startswith("journal:"):
        return url
    scheme, _, rest = url.partition("://")
    if rest.count("@") < 2:
        try:
            return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
        except (sqlalchemy.exc.ArgumentError, ValueError):
            pass
    # An unencoded "@" in the password (SQLAlchemy would read part of it as the host), or a URL it
    # cannot read: everything up to the last "@" after the user name is masked.
    credentials, at, host = rest.rpartition("@")
    return f"{scheme}://{credentials.split(':')[0]}:***@{host}" if at and ":" in credentials else url


def journal_path(url: str) -> Path | None:
    """The file of a ``journal:`` URL; None for any other URL."""
    if not url.startswith("journal:"):
        return None
    rest = url[len("journal:") :]
    if rest.startswith("///"):
        rest = rest[2:]
    elif rest.startswith("//"):
        raise InputError(f"storage {url}: write journal:relative/path or journal:///absolute/path")
    if not rest:
        raise InputError("storage journal: needs a file path, e.g. journal:studies/demo.journal")
    return Path(rest).expanduser()


def _sqlite_file(url: str) -> sqlalchemy.engine.URL | None:
    """The parsed URL when ``url`` names a SQLite database file; None for anything else (another
    database, memory, a URI filename in SQLite's own syntax, a malformed URL, which opening reports)."""
    try:
        parsed = sqlalchemy.engine.make_url(url)
    except (sqlalchemy.exc.ArgumentError, ValueError):
        return None
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    return None if database.startswith("file:") else parsed


def storage_file(url: str) -> Path | None:
    """The file a file-backed storage URL names (a journal, SQLite); None for a server or memory."""
    path = journal_path(url)
    if path is not None:
        return path
    sqlite = _sqlite_file(url)
    # As SQLite opens it: no "~" expansion.
    return None if sqlite is None else Path(os.path.abspath(str(sqlite.database)))


def url_beside(url: str, folder: Path) -> str:
    """A file-backed storage URL whose relative path is read against ``folder``, made absolute.

    Any other URL (a server, memory, a SQLite URI filename, an absolute path) is returned as it is.
    """
    if url.startswith("journal:"):
        path = journal_path(url)  # "~" expanded
        if path is None or path.is_absolute():
            return url
        return f"journal:///{str((folder / path).resolve()).lstrip('/')}"
    sqlite = _sqlite_file(url)
    if sqlite is None or os.path.isabs(str(sqlite.database)):
        return url
    # "~" as in the study file's other paths (SQLite itself would read it as a folder's name).
    absolute = str((folder / Path(str(sqlite.database)).expanduser()).resolve())
    return sqlite.set(database=absolute).render_as_string(hide_password=False)


def default_storage_url(folder: Path, name: str, *, jobs: int = 1) -> str:
    """The storage of a study file without a ``storage`` key.

    SQLite beside the study file, unless several local jobs are asked for or a journal of the study
    already exists there (and holds records, or no SQLite file does): SQLite's file locking is not
    safe for concurrent writers, a journal is.
    """
    journal = (folder / f"{name}.journal").resolve()
    sqlite = folder / f"{name}.db"
    if jobs > 1 or journal_holds_records(journal) or (journal.is_file() and not sqlite.is_file()):
        return f"journal:///{str(journal).lstrip('/')}"
    return f"sqlite:///{sqlite.resolve()}"


def is_concurrent_safe(url: str) -> bool:
    """Whether several processes may write the storage at once (not SQLite, whatever its driver)."""
    if url.startswith("journal:"):
        return True
    try:
        return sqlalchemy.engine.make_url(url).get_backend_name() != "sqlite"
    except (sqlalchemy.exc.ArgumentError, ValueError):
        return True  # malformed: opening it says so


@dataclasses.dataclass
class StorageClock:
    """Time a worker spent in storage calls: its own (which delay its next trial) and its heartbeats'."""

    seconds: float = 0.0
    calls: int = 0
    background_seconds: float = 0.0


_outermost = threading.local()


def _instrument(storage: optuna.storages.BaseStorage) -> StorageClock:
    """Times every public call into ``storage`` (the outermost one only, when calls nest)."""
    clock = StorageClock()
    main = threading.main_thread()
    names = [n for n in dir(storage) if not n.startswith("_") or n == "_get_stale_trial_ids"]
    for name in names:
        method = getattr(storage, name, None)
        if not inspect.ismethod(method):
            continue

        def timed(*args: Any, _method: Callable[..., Any] = method, **kwargs: Any) -> Any:
            if getattr(_outermost, "busy", False):
                return _method(*args, **kwargs)
            _outermost.busy = True
            started = time.perf_counter()
            try:
                return _method(*args, **kwargs)
            finally:
                _outermost.busy = False
                elapsed = time.perf_counter() - started
                if threading.current_thread() is main:
                    clock.seconds += elapsed
                    clock.calls += 1
                else:
                    clock.background_seconds += elapsed

        setattr(storage, name, timed)
    return clock


def storage_clock(study: optuna.Study) -> StorageClock | None:
    """The clock of a study opened through :func:`make_storage` (None for any other)."""
    storage = study._storage
    storage = getattr(storage, "_backend", storage)  # Optuna wraps an RDB storage in a cache
    clock = getattr(storage, "memfront_clock", None)
    return clock if isinstance(clock, StorageClock) else None


def make_storage(url: str, *, heartbeat_interval: float, grace_period: float) -> optuna.storages.BaseStorage:
    """Opens the storage at ``url`` with heartbeats, and a retry of each stale trial's configuration.

    Every call into it is timed (see :func:`storage_clock`): the coordination overhead of a study.

    Raises:
        InputError: If the storage cannot be opened (no server, wrong credentials, bad URL, a
            folder that does not exist); the message names the URL without its password.
    """
    with warnings.catch_warnings():
        # Heartbeats and retries are marked experimental in Optuna; they are what this storage is for.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = _make_storage(url, heartbeat_interval=heartbeat_interval, grace_period=grace_period)
    storage.memfront_clock = _instrument(storage)  # type: ignore[attr-defined]
    return storage


def _make_storage(url: str, *, heartbeat_interval: float, grace_period: float) -> optuna.storages.BaseStorage:
    retry = retry_lost_trial
    try:
        path = journal_path(url)
        if path is not None:
            if not path.parent.is_dir():
                raise InputError(f"storage {url}: folder {path.parent} does not exist")
            return HeartbeatJournalStorage(
                path, heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                stale_trial_callback=retry,
            )  # fmt: skip
        check_sql_url(url)
        engine_kwargs = _engine_kwargs(url)
        for attempt in range(_SCHEMA_ATTEMPTS):
            try:
                # Whole seconds (Optuna's RDB storage takes no others), never shorter than asked.
                return HeartbeatRDBStorage(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=max(1, math.ceil(heartbeat_interval)),
                    grace_period=max(1, math.ceil(grace_period)),
                    heartbeat_stale_trial_callback=retry,
                )
            except Exception as error:
                # Workers started at once on an empty database all create Optuna's tables: all but
                # one fail on PostgreSQL's catalog ("duplicate key", "already exists"). Try again.
                racing = any(text in str(error) for text in ("duplicate key", "already exists"))
                if not racing or attempt == _SCHEMA_ATTEMPTS - 1:
                    raise
                time.sleep(random.uniform(0.2, 1.0))
        raise AssertionError("unreachable")
    except InputError:
        raise
    except Exception as error:  # SQLAlchemy, drivers and the file system each raise their own
        raise StorageError(f"storage {safe_url(url)} cannot be opened: {error_line(error)}") from None


def holds_optuna_tables(url: str) -> bool:
    """Whether the SQL database at ``url`` has Optuna's tables (a journal: True), without writing.

    Opening an RDB storage creates Optuna's schema in any database, an empty file or a user's own
    included: a command that only reads asks this first.

    Raises:
        StorageError: If the database cannot be read.
    """
    if journal_path(url) is not None:
        return True
    return database_tables(url) >= _OPTUNA_TABLES


def database_tables(url: str) -> set[str]:
    """The tables of the SQL database at ``url``, read without writing.

    Raises:
        InputError: For a URL that names no database memfront can keep a study in.
        StorageError: If the database cannot be read (no server, no driver for its scheme).
    """
    check_sql_url(url)
    try:
        engine = sqlalchemy.create_engine(url, **_engine_kwargs(url))
    except Exception as error:  # a driver that is not installed, a malformed URL
        raise StorageError(f"storage {safe_url(url)} cannot be opened: {error_line(error)}") from None
    try:
        return set(sqlalchemy.inspect(engine).get_table_names())
    except Exception as error:
        raise StorageError(f"storage {safe_url(url)} cannot be read: {error_line(error)}") from None
    finally:
        engine.dispose()


def foreign_tables(url: str) -> set[str]:
    """Tables of a SQL database that holds no Optuna schema: a user's own database, which a study
    must not be written into (opening it as a storage would add Optuna's tables beside them)."""
    if journal_path(url) is not None:
        return set()
    tables = database_tables(url)
    # Optuna's own tables (all of its schema, or part of it while another worker creates it) and
    # Alembic's record of its version: whatever else is there is not Optuna's.
    return set() if tables >= _OPTUNA_TABLES else tables - _OPTUNA_SCHEMA


_SQL_SCHEMES = ("sqlite", "postgresql", "mysql", "mariadb", "mssql", "oracle")  # SQLAlchemy's dialects


def check_sql_url(url: str) -> None:
    """Refuses a URL that is not a SQL database memfront can keep a study in: another scheme, or a
    SQLite database in memory (gone when the command ends, with everything it stored).

    Raises:
        InputError: Saying what a storage URL looks like.
    """
    examples = "sqlite:///file.db, journal:file.journal, or a server such as postgresql://user@host/db"
    if "://" not in url:
        raise InputError(
            f"storage {url!r} is not a storage URL: a file is sqlite:///{url} or journal:{url}, a "
            "server e.g. postgresql://user@host/db"
        )
    scheme = url.split("://", 1)[0].split("+", 1)[0].lower()
    if scheme not in _SQL_SCHEMES:
        raise InputError(f"storage {safe_url(url)}: memfront keeps studies in {examples}, not {scheme}")
    if scheme == "sqlite":
        try:
            database = sqlalchemy.engine.make_url(url).database
        except (sqlalchemy.exc.ArgumentError, ValueError):
            return  # opening it says what is wrong
        if not database or database == ":memory:" or "mode=memory" in database:
            raise InputError(
                f"storage {safe_url(url)} is a database in memory, gone when the command ends: name a "
                "file, e.g. sqlite:///study.db"
            )


# Tables every Optuna schema has: a database with a table of one of these names only (a user's own
# "studies") is not a study's storage.
_OPTUNA_TABLES = {"studies", "trials", "version_info"}
_OPTUNA_SCHEMA = {
    "alembic_version", "studies", "study_directions", "study_system_attributes", "study_user_attributes",
    "trial_heartbeats", "trial_intermediate_values", "trial_params", "trial_system_attributes",
    "trial_user_attributes", "trial_values", "trials", "version_info",
}  # fmt: skip


def _engine_kwargs(url: str) -> dict[str, Any]:
    if url.startswith(("postgresql", "mysql")):
        return {"connect_args": {"connect_timeout": _CONNECT_TIMEOUT_S}}
    return {}


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Optuna's INFO lines (a study created, each trial told) off while in the block, restored after:
    memfront prints its own, and a notebook's other Optuna studies keep their verbosity."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(max(verbosity, optuna.logging.WARNING))
    try:
        yield
    finally:
        optuna.logging.set_verbosity(verbosity)


def ask(study: optuna.Study) -> optuna.Trial:
    """``study.ask()``, without Optuna's warning that heartbeats are meant for ``Study.optimize``.

    The search is ask-and-tell, and records its heartbeats itself (:class:`search.study._workers.Heartbeat`).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        return study.ask()


def error_line(error: BaseException) -> str:
    """The first line of an error's message (of the driver's error, for SQLAlchemy's wrappers)."""
    text = str(getattr(error, "orig", None) or error).strip()
    return text.splitlines()[0].strip() if text else type(error).__name__
