from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import yaml

from search.data._dataset import load_dataset
from search.data._demo import CLASS_NAMES, make_demo_dataset
from search.errors import InputError
from search.study._prepare import read_study_dataset, resolve_data
from search.study._spec import StudySpec


def _digest(root: Path) -> str:
    sha = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix in (".jpg", ".txt"):
            sha.update(path.relative_to(root).as_posix().encode())
            sha.update(path.read_bytes())
    return sha.hexdigest()


def test_same_arguments_give_identical_files(tmp_path: Path) -> None:
    make_demo_dataset(tmp_path / "a", images=8, size=64, seed=3)
    make_demo_dataset(tmp_path / "b", images=8, size=64, seed=3)
    make_demo_dataset(tmp_path / "c", images=8, size=64, seed=4)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


@pytest.mark.parametrize(
    ("counts", "message"),
    [
        ({"images": 0}, "images must be positive, got 0"),
        ({"size": -3}, "size must be positive, got -3"),
        ({"val_images": 0}, "val_images must be positive, got 0"),
    ],
)
def test_a_count_not_positive_names_only_itself(tmp_path: Path, counts: dict[str, int], message: str) -> None:
    # `memfront demo-data` shows this line: it must not name max_objects, which it has no option for.
    with pytest.raises(ValueError) as caught:
        make_demo_dataset(tmp_path / "data", **counts)
    assert str(caught.value) == message
    assert not (tmp_path / "data").exists()


def test_layout_and_labels(tmp_path: Path) -> None:
    data_yaml = make_demo_dataset(tmp_path, images=20, val_images=6, size=80)
    data = yaml.safe_load(data_yaml.read_text())
    assert data["names"] == dict(enumerate(CLASS_NAMES))
    assert len(list((tmp_path / "images" / "train").glob("*.jpg"))) == 20
    assert len(list((tmp_path / "images" / "val").glob("*.jpg"))) == 6
    for label in (tmp_path / "labels").rglob("*.txt"):
        rows = [line.split() for line in label.read_text().splitlines()]
        assert rows, label
        for cls, *box in rows:
            assert 0 <= int(cls) < len(CLASS_NAMES)
            assert all(0.0 < float(v) <= 1.0 for v in box)


def test_a_moved_demo_dataset_is_found_where_it_is_now(tmp_path: Path) -> None:
    spec = StudySpec(
        name="d", data="demo", memory_limit=2**30, demo_images=4, demo_size=64, demo_val_images=2
    )
    with pytest.raises(InputError, match=r"not in .*\(a run generates it\)"):
        read_study_dataset(spec, tmp_path / "old" / "d.yaml")  # reading never generates
    assert not (tmp_path / "old").exists()
    first = Path(resolve_data(spec, tmp_path / "old" / "d.yaml"))
    assert first.is_absolute() and yaml.safe_load(first.read_text())["path"] == str(first.parent)
    shutil.move(tmp_path / "old", tmp_path / "new")  # a checkout moved or copied elsewhere
    moved = tmp_path.resolve() / "new" / "demo-data" / first.parent.name / "data.yaml"
    before = moved.read_text()
    # Reading finds it where it is now, and leaves its yaml as it was.
    assert (
        read_study_dataset(spec, tmp_path / "new" / "d.yaml").train_images[0].parent.parent.parent
        == moved.parent
    )
    assert moved.read_text() == before
    # Running (or export) mends the yaml, for upstream commands that read its path.
    assert resolve_data(spec, tmp_path / "new" / "d.yaml") == str(moved)
    assert yaml.safe_load(moved.read_text())["path"] == str(moved.parent)
    assert len(load_dataset(str(moved)).train_images) == 4
    assert sorted(p.name for p in moved.parent.iterdir()) == ["data.yaml", "images", "labels"]
