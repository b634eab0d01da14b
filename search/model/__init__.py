"""The memory model: a config's peak host memory predicted term by term, its calibration, pre-flight."""

from __future__ import annotations

from typing import TYPE_CHECKING

from search._lazy import lazy_exports

if TYPE_CHECKING:
    from search.model._calibration import Calibration, calibrate, load_calibration
    from search.model._predict import (
        TERMS,
        DatasetStats,
        MemoryModel,
        Prediction,
        features,
    )
    from search.model._preflight import Preflight, study_memory_model
    from search.model._start import load_starting_model

__all__ = [
    "TERMS",
    "Calibration",
    "DatasetStats",
    "MemoryModel",
    "Prediction",
    "Preflight",
    "calibrate",
    "features",
    "load_calibration",
    "load_starting_model",
    "study_memory_model",
]
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "Calibration": "search.model._calibration",
        "calibrate": "search.model._calibration",
        "load_calibration": "search.model._calibration",
        "TERMS": "search.model._predict",
        "DatasetStats": "search.model._predict",
        "MemoryModel": "search.model._predict",
        "Prediction": "search.model._predict",
        "features": "search.model._predict",
        "load_starting_model": "search.model._start",
        "Preflight": "search.model._preflight",
        "study_memory_model": "search.model._preflight",
    },
)
