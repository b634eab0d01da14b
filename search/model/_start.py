"""Where the memory model starts before it is fitted on a study's runs, and why.

The machine's calibration when one is cached (:mod:`search.model._calibration`), else the priors with
the framework term anchored on a measured footprint (:mod:`search.measure._footprint`: the study's,
as its run stored it, or the machine's), else the plain priors. The one definition that ``predict``,
pre-flight, the probes' planner and the study's report start from.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Literal

from search.errors import MemfrontError
from search.frameworks import DEFAULT_FRAMEWORK
from search.model._predict import MODEL_STATE_BYTES, MemoryModel

if TYPE_CHECKING:
    from search.model._calibration import Calibration

__all__ = ["StartingModel", "load_starting_model", "starting_model"]


@dataclasses.dataclass(frozen=True)
class StartingModel:
    """The best model there is before fitting on a study's runs, and where it came from.

    Attributes:
        model: The coefficients to predict with (and to start a fit from).
        source: ``calibration``, ``footprint`` (priors anchored on the measured footprint) or ``priors``.
        origin: One line for people: how the model was derived and how to improve it.
        calibration: The cached calibration, if that is the source (its rows join a study's fit).
        footprint_bytes: The measured framework footprint, if that is the source.
    """

    model: MemoryModel
    source: Literal["calibration", "footprint", "priors"]
    origin: str
    calibration: Calibration | None = None
    footprint_bytes: int | None = None

    @property
    def calibration_rows(self) -> list[tuple[dict[str, float], float]]:
        """The calibration's measured rows (none without a calibration)."""
        return list(self.calibration.rows) if self.calibration is not None else []

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the source and the figures it rests on."""
        return {
            "source": self.source,
            "calibration_runs": len(self.calibration.rows) if self.calibration is not None else 0,
            "footprint_bytes": self.footprint_bytes,
            "model_state_bytes": MODEL_STATE_BYTES if self.source == "footprint" else None,
        }


_CALIBRATE_HINT = "run `memfront calibrate` for this machine's figures"


def starting_model(
    *,
    calibration: Calibration | None,
    device: str,
    framework: str = DEFAULT_FRAMEWORK,
    footprint_bytes: int | None = None,
    measure: bool = True,
) -> StartingModel:
    """The best model before fitting: the calibration if there is one, else the priors anchored on
    this machine's framework footprint, else the plain priors.

    The one definition that ``predict``, pre-flight and the study's report start from.

    Args:
        calibration: The machine's cached calibration for the model and device, or None.
        device: The trial device (selects the cached footprint).
        framework: The framework whose footprint anchors an uncalibrated model.
        footprint_bytes: The footprint to anchor on (a study's, as its run measured it); default:
            this machine's cached one.
        measure: Measure the footprint when it is not cached (a child process that imports torch:
            seconds). A command that only reads results passes False: it never runs anything.
    """
    if calibration is not None:
        fitted = calibration.model
        error = "" if fitted.median_error is None else f", median error {100 * fitted.median_error:.1f}%"
        return StartingModel(
            model=fitted,
            source="calibration",
            origin=f"calibrated on this machine ({fitted.samples} runs{error})",
            calibration=calibration,
        )
    from search.measure._footprint import cached_footprint_bytes, framework_footprint_bytes

    footprint = footprint_bytes
    if footprint is None and not measure:
        footprint = cached_footprint_bytes(device=device, framework=framework)
    elif footprint is None:
        try:
            # Cached per machine by `memfront run`; measured here otherwise (a child process, seconds).
            footprint = framework_footprint_bytes(device=device, framework=framework)
        except MemfrontError as error:
            return StartingModel(
                model=MemoryModel.prior(),
                source="priors",
                origin=f"uncalibrated (priors; no footprint: {error}): {_CALIBRATE_HINT}",
            )
    if footprint is None:
        return StartingModel(
            model=MemoryModel.prior(),
            source="priors",
            origin=f"uncalibrated (priors; no footprint measured on this machine): {_CALIBRATE_HINT}",
        )
    mib = 1024**2
    return StartingModel(
        model=MemoryModel.anchored(footprint),
        source="footprint",
        origin=(
            f"uncalibrated: framework term from this machine's measured footprint ({footprint / mib:.0f} MiB)"
            f" + model state prior ({MODEL_STATE_BYTES / mib:.0f} MiB); other terms priors: {_CALIBRATE_HINT}"
        ),
        footprint_bytes=footprint,
    )


def load_starting_model(
    model_name: str,
    device: str,
    *,
    framework: str | None = None,
    footprint_bytes: int | None = None,
    measure: bool = True,
) -> StartingModel:
    """:func:`starting_model` with the calibration cached for ``model_name`` and ``device``, if any.

    ``framework`` defaults to the model's (:func:`search.frameworks.infer_framework`);
    ``footprint_bytes`` and ``measure`` are :func:`starting_model`'s.
    """
    from search.frameworks import resolve_framework
    from search.model._calibration import load_calibration

    framework, _ = resolve_framework(framework, model_name)
    calibration = load_calibration(model_name, device, framework=framework)
    return starting_model(
        calibration=calibration, device=device, framework=framework, footprint_bytes=footprint_bytes,
        measure=measure,
    )  # fmt: skip
