"""A deterministic synthetic detection dataset that small models learn quickly.

Three classes of filled shapes (circle, square, triangle), each with its own colour family, on a
smooth noisy background. Objects are large and rarely overlap, so a from-scratch yolov5n reaches a
useful mAP50-95 within a few short epochs on a CPU: what a demo study needs to show a real front.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import yaml
from PIL import Image, ImageDraw

from search.errors import InputError

__all__ = ["CLASS_NAMES", "make_demo_dataset", "mend_demo_path"]

CLASS_NAMES = ("circle", "square", "triangle")
_BASE_COLOURS = np.array([[220, 40, 40], [40, 180, 60], [50, 80, 230]], dtype=float)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    corners = rng.uniform(70, 190, size=(2, 2, 3))
    ramp = np.linspace(0.0, 1.0, size)
    top = corners[0, 0] * (1 - ramp[:, None]) + corners[0, 1] * ramp[:, None]
    bottom = corners[1, 0] * (1 - ramp[:, None]) + corners[1, 1] * ramp[:, None]
    image = top[None, :, :] * (1 - ramp[:, None, None]) + bottom[None, :, :] * ramp[:, None, None]
    image += rng.normal(0.0, 12.0, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def _overlaps(box: tuple[float, float, float, float], boxes: list[tuple[float, ...]]) -> bool:
    x0, y0, x1, y1 = box
    for a0, b0, a1, b1 in boxes:
        inter_w = min(x1, a1) - max(x0, a0)
        inter_h = min(y1, b1) - max(y0, b0)
        if inter_w > 0 and inter_h > 0:
            return True
    return False


def _draw_image(
    rng: np.random.Generator, size: int, max_objects: int, object_size: tuple[float, float]
) -> tuple[Image.Image, list[str]]:
    image = Image.fromarray(_background(rng, size))
    draw = ImageDraw.Draw(image)
    placed: list[tuple[float, ...]] = []
    labels: list[str] = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        for _attempt in range(20):
            side = float(rng.uniform(*object_size)) * size
            x0 = float(rng.uniform(0, size - side))
            y0 = float(rng.uniform(0, size - side))
            box = (x0, y0, x0 + side, y0 + side)
            if not _overlaps(box, placed):
                break
        else:
            continue
        cls = int(rng.integers(len(CLASS_NAMES)))
        colour = np.clip(_BASE_COLOURS[cls] + rng.normal(0, 18, 3), 0, 255).astype(int)
        fill = (int(colour[0]), int(colour[1]), int(colour[2]))
        if cls == 0:
            draw.ellipse(box, fill=fill)
        elif cls == 1:
            draw.rectangle(box, fill=fill)
        else:
            draw.polygon([(x0 + side / 2, y0), (x0, y0 + side), (x0 + side, y0 + side)], fill=fill)
        placed.append(box)
        cx, cy = (box[0] + box[2]) / 2 / size, (box[1] + box[3]) / 2 / size
        labels.append(f"{cls} {cx:.6f} {cy:.6f} {side / size:.6f} {side / size:.6f}")
    return image, labels


def make_demo_dataset(
    root: str | Path,
    *,
    images: int = 256,
    val_images: int | None = None,
    size: int = 320,
    max_objects: int = 4,
    object_size: tuple[float, float] = (0.07, 0.2),
    seed: int = 0,
) -> Path:
    """Writes the synthetic shapes dataset in YOLOv5 layout and returns its data yaml.

    The same arguments always give byte-identical files.

    Args:
        root: Folder to write (``images/{train,val}``, ``labels/{train,val}``, ``data.yaml``).
        images: Number of training images.
        val_images: Number of validation images; defaults to a quarter of ``images`` (at least 16).
        size: Side of the square images in pixels.
        max_objects: Most shapes in one image.
        object_size: Range of a shape's side, as a fraction of the image side. Small shapes make
            resolution matter: a larger imgsz is more accurate and costs more memory.
        seed: Random seed.

    Returns:
        The path of the written ``data.yaml``.

    Raises:
        ValueError: If a count or the size is not positive.
    """
    n_val = val_images if val_images is not None else max(16, images // 4)
    # One at a time, the one at fault named: `demo-data` shows this to a user who has no max_objects.
    for name, value in (
        ("images", images),
        ("val_images", n_val),
        ("size", size),
        ("max_objects", max_objects),
    ):
        if value <= 0:
            raise ValueError(f"{name} must be positive, got {value}")
    root = Path(root).resolve()
    rng = np.random.default_rng(seed)
    for split, count in (("train", images), ("val", n_val)):
        image_dir, label_dir = root / "images" / split, root / "labels" / split
        image_dir.mkdir(parents=True, exist_ok=True)
        label_dir.mkdir(parents=True, exist_ok=True)
        for index in range(count):
            image, labels = _draw_image(rng, size, max_objects, object_size)
            image.save(image_dir / f"{index:06d}.jpg", quality=92)
            (label_dir / f"{index:06d}.txt").write_text("\n".join(labels) + "\n")
    data_yaml = root / "data.yaml"
    data = {
        "path": str(root),
        "train": "images/train",
        "val": "images/val",
        "names": dict(enumerate(CLASS_NAMES)),
    }
    data_yaml.write_text(yaml.safe_dump(data, sort_keys=False))
    return data_yaml


def mend_demo_path(data_yaml: Path) -> None:
    """Points a generated ``data.yaml``'s ``path`` at the folder it is in now.

    yolov5 and ultralytics resolve a relative ``path`` against their own folders, so the dataset's
    root is written absolute: a checkout moved or copied elsewhere would otherwise train on (or
    fail to find) the old folder. The yaml is replaced whole, as workers may read it meanwhile.

    Raises:
        InputError: If the yaml cannot be rewritten (a read-only copy).
    """
    root = data_yaml.parent.resolve()
    data = yaml.safe_load(data_yaml.read_text())
    if not isinstance(data, dict) or data.get("path") == str(root):
        return
    data["path"] = str(root)
    written = data_yaml.with_name(f".{data_yaml.name}.{os.getpid()}")
    try:
        written.write_text(yaml.safe_dump(data, sort_keys=False))
        os.replace(written, data_yaml)
    except OSError as error:
        written.unlink(missing_ok=True)
        why = f"its data.yaml cannot be updated: {error.strerror or error}"
        raise InputError(f"the demo dataset moved to {root}, and {why}") from None
