"""Accuracy measured with its noise: accuracy configs, replicates, intervals and the noise-aware front."""

from __future__ import annotations

from typing import TYPE_CHECKING

from search._lazy import lazy_exports

if TYPE_CHECKING:
    from search.accuracy._estimates import AccuracyEstimate, AccuracyEstimates, FullConfig, estimate_accuracy
    from search.accuracy._front import (
        MEMORY_SPREAD,
        SPEED_SPREAD,
        FrontPoint,
        FullFrontPoint,
        front_hypervolume,
        full_front,
        needs_no_more_gpu_memory,
        needs_no_more_memory,
        noise_front,
        shown_faster,
        speed_repeats_apart,
        speed_steps,
    )
    from search.accuracy._noise import Noise, NoiseRules
    from search.accuracy._pick import (
        Pick,
        export_decisions,
        fits_budget,
        fits_gpu_budget,
        fits_gpu_with_spread,
        fits_with_spread,
        pick_config,
    )
    from search.accuracy._trainings import Training, accuracy_key, key_text, system_key, trainings_of

__all__ = [
    "MEMORY_SPREAD",
    "SPEED_SPREAD",
    "AccuracyEstimate",
    "AccuracyEstimates",
    "FrontPoint",
    "FullConfig",
    "FullFrontPoint",
    "Noise",
    "NoiseRules",
    "Pick",
    "Training",
    "accuracy_key",
    "estimate_accuracy",
    "export_decisions",
    "fits_budget",
    "fits_gpu_budget",
    "fits_gpu_with_spread",
    "fits_with_spread",
    "front_hypervolume",
    "full_front",
    "key_text",
    "needs_no_more_gpu_memory",
    "needs_no_more_memory",
    "noise_front",
    "pick_config",
    "shown_faster",
    "speed_repeats_apart",
    "speed_steps",
    "system_key",
    "trainings_of",
]
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        **dict.fromkeys(
            ["AccuracyEstimate", "AccuracyEstimates", "FullConfig", "estimate_accuracy"],
            "search.accuracy._estimates",
        ),
        **dict.fromkeys(
            ["Training", "accuracy_key", "key_text", "system_key", "trainings_of"],
            "search.accuracy._trainings",
        ),
        "Noise": "search.accuracy._noise",
        "NoiseRules": "search.accuracy._noise",
        "MEMORY_SPREAD": "search.accuracy._front",
        "SPEED_SPREAD": "search.accuracy._front",
        "FrontPoint": "search.accuracy._front",
        "FullFrontPoint": "search.accuracy._front",
        "full_front": "search.accuracy._front",
        "front_hypervolume": "search.accuracy._front",
        "needs_no_more_gpu_memory": "search.accuracy._front",
        "needs_no_more_memory": "search.accuracy._front",
        "noise_front": "search.accuracy._front",
        "shown_faster": "search.accuracy._front",
        "speed_repeats_apart": "search.accuracy._front",
        "speed_steps": "search.accuracy._front",
        "Pick": "search.accuracy._pick",
        "export_decisions": "search.accuracy._pick",
        "fits_budget": "search.accuracy._pick",
        "fits_gpu_budget": "search.accuracy._pick",
        "fits_gpu_with_spread": "search.accuracy._pick",
        "fits_with_spread": "search.accuracy._pick",
        "pick_config": "search.accuracy._pick",
    },
)
