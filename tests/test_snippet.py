"""Measuring snippets in a child: their answer travels in a file, whatever the child prints."""

from __future__ import annotations

import pytest

from search.errors import TrialError
from search.measure._snippet import run_snippet


def test_the_answer_survives_a_first_run_banner_on_stdout() -> None:
    code = "print('Creating new Ultralytics Settings v0.0.8 file'); print(12); result({'pss': 845})"
    assert run_snippet(code, what="measure") == {"pss": 845}


def test_a_failing_snippet_names_the_childs_error_not_its_last_stderr_line() -> None:
    code = "import warnings; warnings.warn('pkg_resources is deprecated'); import no_such_module_here"
    with pytest.raises(TrialError, match="cannot measure: ModuleNotFoundError: No module named 'no_such"):
        run_snippet(code, what="measure")


def test_a_snippet_that_answers_nothing_or_hangs_is_one_clear_error() -> None:
    with pytest.raises(TrialError, match="ended with no result"):
        run_snippet("print('hello')", what="measure")
    with pytest.raises(TrialError, match="did not finish within 1 s"):
        run_snippet("import time; time.sleep(30)", what="measure", timeout_s=1)


def test_the_snippet_writes_its_settings_in_its_own_folder() -> None:
    names = ("YOLO_CONFIG_DIR", "MPLCONFIGDIR", "XDG_CONFIG_HOME")
    code = f"import os; result([os.environ[k] for k in {names!r}])"
    folders = run_snippet(code, what="measure")
    assert all("memfront-snippet-" in folder for folder in folders)
