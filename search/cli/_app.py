"""The ``memfront`` command line. Parent side only: never imports torch or yolov5."""

from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import click
import typer

from search import _pause as pause
from search.cli._options import EXIT_BAD_INPUT, EXIT_INTERRUPTED, fail
from search.errors import MemfrontError
from search.study._storage import quiet_optuna

__all__ = ["app", "main"]

app = typer.Typer(
    name="memfront",
    help="Find the YOLO (yolov5, ultralytics) settings with the best accuracy for a given amount of memory.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


_MAX_DEMO_SIZE = 4096


@app.command("demo-data")
def demo_data(
    folder: Annotated[Path, typer.Argument(help="Folder to write the dataset to.")],
    images: Annotated[int, typer.Option(help="Training images.")] = 256,
    val_images: Annotated[int | None, typer.Option(help="Validation images (default: a quarter).")] = None,
    size: Annotated[int, typer.Option(help="Image side in pixels.")] = 320,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Generate the deterministic synthetic shapes dataset."""
    from search.data._demo import make_demo_dataset

    if folder.exists() and not folder.is_dir():
        fail(f"{folder} is a file, not a folder")
    if folder.is_dir() and any(folder.iterdir()):
        # It would overwrite images and labels of the same names, leaving a dataset of two kinds.
        fail(f"{folder} is not empty: give a new or empty folder")
    if not 16 <= size <= _MAX_DEMO_SIZE:
        fail(f"--size: images of 16 to {_MAX_DEMO_SIZE} pixels a side, not {size}")
    try:
        data_yaml = make_demo_dataset(folder, images=images, val_images=val_images, size=size, seed=seed)
    except ValueError as error:
        fail(str(error))
    except OSError as error:
        fail(f"cannot write the dataset to {folder}: {error.strerror or error}")
    print(data_yaml)


from search.cli import _export as export_cli  # noqa: E402 - register their commands on `app`
from search.cli import _predict as predict_cli  # noqa: E402 - register their commands on `app`
from search.cli import _probe as probe_cli  # noqa: E402 - register their commands on `app`
from search.cli import _results as study_cli  # noqa: E402 - register their commands on `app`
from search.cli import _run as run_cli  # noqa: E402 - register their commands on `app`
from search.cli import _train as train_cli  # noqa: E402 - register their commands on `app`

train_cli.register(app)
run_cli.register(app)
study_cli.register(app)
export_cli.register(app)
predict_cli.register(app)
probe_cli.register(app)


def _terminate(signum: int, frame: Any) -> NoReturn:
    raise KeyboardInterrupt


def _os_error_line(error: OSError) -> str:
    """The system's refusal as a user reads it, the file first (``out.csv: Permission denied``), not
    Python's ``[Errno 13] Permission denied: 'out.csv'``."""
    reason = error.strerror or str(error)
    files = [str(name) for name in (error.filename, error.filename2) if name is not None]
    return f"{' -> '.join(files)}: {reason}" if files else reason


def main(argv: list[str] | None = None) -> int:
    """Runs the CLI; bad input is one line on stderr and exit code 2."""
    signal.signal(signal.SIGTERM, _terminate)
    # A closed terminal or a dropped SSH session stops memfront as Ctrl-C does (the trial cleaned up,
    # a training's weights kept), not outright; unless it was started to outlive them (nohup).
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
        signal.signal(signal.SIGHUP, _terminate)
    # A process started in the background by a script inherits SIGINT ignored; memfront still stops
    # its trial cleanly on SIGINT (what --jobs forwards, and what a user's `kill -INT` means).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # Ctrl-Z stops the trials (in sessions of their own) with memfront, and its clocks leave the pause out.
    pause.install()
    command = typer.main.get_command(app)
    try:
        with quiet_optuna():  # the command prints its own lines
            result = command.main(args=argv, prog_name="memfront", standalone_mode=False)
    except MemfrontError as error:
        print(f"memfront: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except click.exceptions.Exit as done:
        return done.exit_code
    except click.ClickException as error:
        # typer and click each suggest a near command name: say it once.
        message = re.sub(r" \(Did you mean one of: [^)]*\?\)$", "", error.format_message())
        print(f"memfront: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except click.exceptions.Abort:
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("memfront: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader of a pipe left (`memfront report ... | head`): nothing to say, and Python's
        # last flush of stdout must not fail again on the closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as error:
        # A file or folder the system refused (full disk, permissions) after the checks: one line,
        # as for bad input, but not exit 2 (the input may have been right).
        print(f"memfront: error: {_os_error_line(error)}", file=sys.stderr)
        return 1
    except Exception as error:
        failed = _storage_failure(error)
        if failed is None:
            raise
        # The storage failed after it was opened (a server gone, a file another process locks):
        # every trial it holds was stored whole, and a run resumes from them.
        from search.study._storage import error_line

        line = error_line(failed)
        # Running again cannot help a file this user may not write: say what to change instead.
        again = "make it writable" if "readonly database" in line else "run the command again"
        print(
            f"memfront: error: the study's storage failed: {line}; what it stored is kept: {again}",
            file=sys.stderr,
        )
        return 1
    return result if isinstance(result, int) else 0


def _storage_failure(error: BaseException) -> BaseException | None:
    """The database driver's error behind ``error`` (SQLAlchemy's, or Optuna's wrapper of one), or None."""
    # Only what raised it on purpose (``raise ... from``): a bug raised while a driver's error was
    # being handled keeps its traceback.
    seen: BaseException | None = error
    while seen is not None:
        if type(seen).__module__.startswith("sqlalchemy"):
            return seen
        seen = seen.__cause__
    return error if type(error).__name__ == "StorageInternalError" else None
