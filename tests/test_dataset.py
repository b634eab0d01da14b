from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from search.data._dataset import load_dataset, write_trial_data_yaml
from search.data._demo import make_demo_dataset
from search.errors import InputError


def test_loads_demo_dataset(tiny_data: Path) -> None:
    spec = load_dataset(tiny_data)
    assert len(spec.train_images) == 16 and len(spec.val_images) == 16
    assert spec.names[0] == "circle"


def test_relative_paths_resolve_against_the_yaml(tmp_path: Path) -> None:
    make_demo_dataset(tmp_path / "d", images=4, val_images=2, size=32)
    (tmp_path / "d" / "rel.yaml").write_text(
        yaml.safe_dump({"path": ".", "train": "images/train", "val": "images/val", "names": ["a", "b", "c"]})
    )
    assert len(load_dataset(tmp_path / "d" / "rel.yaml").train_images) == 4


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("train: [unclosed", "not valid YAML"),
        ("- just\n- a list\n", "must be a mapping"),
        ("train: images/train\nval: images/val\n", "'names'"),
        ("train: nowhere\nval: images/val\nnames: [a]\n", "does not exist"),
        ("val: images/val\nnames: [a]\n", "bad.yaml has no 'train:'"),
        ("train: images/train\nnames: [a]\n", "bad.yaml has no 'val:'"),
    ],
)
def test_bad_yaml(tmp_path: Path, content: str, message: str) -> None:
    make_demo_dataset(tmp_path, images=2, val_images=2, size=32)
    bad = tmp_path / "bad.yaml"
    bad.write_text(content)
    with pytest.raises(InputError, match=message):
        load_dataset(bad)


def test_missing_yaml(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        load_dataset(tmp_path / "none.yaml")


def test_no_images_and_no_labels(tmp_path: Path) -> None:
    data_yaml = make_demo_dataset(tmp_path, images=3, val_images=2, size=32)
    shutil.rmtree(tmp_path / "labels" / "train")
    with pytest.raises(InputError, match="has a label file"):
        load_dataset(data_yaml)
    for image in (tmp_path / "images" / "train").iterdir():
        image.unlink()
    with pytest.raises(InputError, match="no images"):
        load_dataset(data_yaml)


def test_subset_is_seeded_and_leaves_user_files_alone(tiny_data: Path, tmp_path: Path) -> None:
    before = tiny_data.read_bytes()
    spec = load_dataset(tiny_data)
    first, count = write_trial_data_yaml(spec, tmp_path, train_images=5, seed=1)
    lines = (tmp_path / "train.txt").read_text().splitlines()
    assert count == 5 and len(lines) == 5
    write_trial_data_yaml(spec, tmp_path, train_images=5, seed=1)
    assert (tmp_path / "train.txt").read_text().splitlines() == lines
    _, half = write_trial_data_yaml(spec, tmp_path, train_fraction=0.5)
    assert half == 8
    assert yaml.safe_load(first.read_text())["names"] == spec.names
    assert tiny_data.read_bytes() == before
