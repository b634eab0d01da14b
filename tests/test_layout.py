from __future__ import annotations

import shutil
import subprocess

import pytest

from .conftest import ROOT


def test_no_source_file_is_ignored_by_git() -> None:
    # A pattern meant for a dataset folder ("data/") once ignored new modules under search/data/:
    # they ran here and were missing from every clone. Caches aside, nothing under the project's
    # own folders may be ignored.
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--others", "--ignored", "--exclude-standard", "--", "search", "tests",
         "bench", "notebooks", ":(glob)studies/*.yaml", "pyproject.toml", "README.md", ".ci"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split("\0")  # fmt: skip
    ignored = [p for p in listed if p and "__pycache__" not in p and not p.startswith("bench/gpu-wheels/")]
    assert not ignored, ignored
