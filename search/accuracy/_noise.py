"""The study's accuracy noise: how it is estimated and judged (the study file's ``accuracy_*`` keys).

The noise is one training's accuracy standard deviation, pooled over every accuracy config trained
more than once (:func:`search.accuracy.estimate_accuracy` sums the squares), and pooled in turn with
the study file's prior when one is given. :class:`NoiseRules` holds the keys' values (and their
defaults: the one definition :class:`search.study.StudySpec` reads them from); :class:`Noise` is the
estimate, with the intervals and thresholds comparisons use.

A study compares every pair of its accuracy configs at once, and at 95% per pair the chance that
one of the 15 pairs of 6 configs is ranked the wrong way round is above 5% (the noise-rule bench:
up to 11% at 16 trainings). The claims a user acts on are fewer: the front drops a config only for
a leaner one that beats it, and export weighs its pick against one runner-up; on those the same
bench measured under 5% and 1%. So comparisons are per pair by default (Student's t), and
``accuracy_family_wise: true`` makes ``confidence`` hold for all pairs of the study's ``family`` of
configs together: the Tukey-Kramer range (the studentized range quantile over sqrt 2, which for two
configs is Student's t). Its price, measured there: with 8-10 trainings a fifth to a quarter of the
studies rank anything instead of a half to three quarters, and export picks about the leanest.
"""

from __future__ import annotations

import dataclasses
import functools
import math

from search.units import plural

__all__ = [
    "DEFAULT_CONFIDENCE",
    "DEFAULT_FAMILY_WISE",
    "DEFAULT_MIN_DF",
    "DEFAULT_RESOLUTION",
    "Noise",
    "NoiseRules",
]

DEFAULT_CONFIDENCE = 0.95
DEFAULT_RESOLUTION = 0.005
DEFAULT_MIN_DF = 3
DEFAULT_FAMILY_WISE = False


def degrees_of_freedom(count: int) -> str:
    """``1 degree of freedom``, ``3 degrees of freedom``."""
    return f"{plural(count, 'degree')} of freedom"


@dataclasses.dataclass(frozen=True, kw_only=True)
class NoiseRules:
    """How a study judges accuracy differences (the study file's ``accuracy_*`` keys).

    Attributes:
        confidence: The two-sided confidence of intervals and comparisons.
        resolution: The smallest accuracy difference that can ever count as one.
        min_df: The fewest degrees of freedom (the study's replicates and the prior's) before the
            noise is known: below them no interval is given and no difference ranks.
        prior_sd: A prior guess of one training's accuracy sd (None: no prior).
        prior_df: How many degrees of freedom the prior's sd is worth (0: no prior).
        family_wise: Whether ``confidence`` holds for all the study's pairs of configs at once
            (Tukey-Kramer) rather than for each pair on its own.
    """

    confidence: float = DEFAULT_CONFIDENCE
    resolution: float = DEFAULT_RESOLUTION
    min_df: int = DEFAULT_MIN_DF
    prior_sd: float | None = None
    prior_df: int = 0
    family_wise: bool = DEFAULT_FAMILY_WISE

    def __post_init__(self) -> None:
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence must be in (0, 1), got {self.confidence}")
        if self.min_df < 1:
            raise ValueError(f"min_df must be at least 1, got {self.min_df}")
        if (self.prior_sd is None) != (self.prior_df == 0) or self.prior_df < 0:
            raise ValueError("a noise prior needs both an sd and a positive df (or neither)")
        if self.prior_sd is not None and not self.prior_sd > 0:
            raise ValueError(f"a noise prior's sd must be positive, got {self.prior_sd}")

    def noise(self, squares: float, df: int, *, family: int = 2) -> Noise:
        """The noise from the study's within-config sum of ``squares`` on ``df`` degrees of freedom,
        pooled with the prior (whose sd counts as ``prior_df`` replicates' worth of squares), for
        comparisons among ``family`` accuracy configs."""
        prior_squares = 0.0 if self.prior_sd is None else self.prior_df * self.prior_sd**2
        total_df = df + self.prior_df
        return Noise(
            sd=math.sqrt((squares + prior_squares) / total_df) if total_df > 0 else None,
            df=total_df,
            confidence=self.confidence,
            resolution=self.resolution,
            min_df=self.min_df,
            study_sd=math.sqrt(squares / df) if df > 0 else None,
            study_df=df,
            family=family,
            family_wise=self.family_wise,
        )


@dataclasses.dataclass(frozen=True)
class Noise:
    """The study's accuracy noise: a pooled standard deviation of one training's result.

    Attributes:
        sd: The pooled within-config standard deviation, with the prior's (None while no config
            has two replicates and there is no prior).
        df: Its degrees of freedom, the prior's included (0: nothing measured).
        confidence: The two-sided confidence of intervals and comparisons.
        resolution: The smallest accuracy difference that can ever count as one.
        min_df: The fewest degrees of freedom before the noise is :attr:`known`.
        study_sd: The study's own pooled sd, without the prior (what a later study's
            ``accuracy_noise_prior`` takes: ``sd`` would count the prior twice).
        study_df: Its degrees of freedom (``df`` less the prior's).
        family: How many accuracy configs the study compares (those that fit its limit).
        family_wise: Whether ``confidence`` holds for all their pairs together (Tukey-Kramer)
            rather than for each pair on its own (``accuracy_family_wise``).
    """

    sd: float | None
    df: int
    confidence: float = DEFAULT_CONFIDENCE
    resolution: float = DEFAULT_RESOLUTION
    min_df: int = DEFAULT_MIN_DF
    study_sd: float | None = None
    study_df: int = 0
    family: int = 2
    family_wise: bool = DEFAULT_FAMILY_WISE

    @property
    def measured(self) -> bool:
        """Whether there is an estimate at all (some config trained twice, or a prior)."""
        return self.df > 0 and self.sd is not None

    @property
    def known(self) -> bool:
        """Whether the estimate has the degrees of freedom to rank on (:attr:`min_df`)."""
        return self.measured and self.df >= self.min_df

    @property
    def prior_df(self) -> int:
        """How many of ``df`` are the study file's prior's."""
        return self.df - self.study_df

    def half_width(self, replicates: int) -> float:
        """Half the confidence interval of a mean of ``replicates`` trainings (inf while unknown).

        Student's t; family-wise, the comparisons' own multiplier, so that two intervals that do
        not overlap are always two configs told apart (above ``resolution``): with the per-mean t,
        two intervals could lie apart while the study calls their configs within noise. Such an
        interval holds its own mean more often than ``confidence`` (:attr:`interval_text`).
        """
        if not self.known or replicates <= 0:
            return math.inf
        quantile = _range_quantile(self.confidence, self._compared, self.df)
        return quantile * float(self.sd) / math.sqrt(replicates)  # type: ignore[arg-type]

    def difference_threshold(self, n_a: int, n_b: int) -> float:
        """How far apart two means of ``n_a`` and ``n_b`` replicates must be to differ beyond noise."""
        if not self.known:
            return math.inf
        quantile = _range_quantile(self.confidence, self._compared, self.df)
        spread = quantile * float(self.sd) * math.sqrt(1 / n_a + 1 / n_b)  # type: ignore[arg-type]
        return max(self.resolution, spread)

    @property
    def family_wise_applies(self) -> bool:
        """Whether comparisons are family-wise and there are more than two configs (for two, the
        Tukey-Kramer range is Student's t)."""
        return self.family_wise and self.family > 2

    @property
    def _compared(self) -> int:
        """The family size the multiplier is for (2: each pair on its own, Student's t)."""
        return self.family if self.family_wise_applies else 2

    @property
    def family_text(self) -> str:
        """How differences are judged, e.g. ``95% over all 6 configs' pairs together, Tukey-Kramer``."""
        confidence = f"{100 * self.confidence:g}%"
        if not self.family_wise_applies:
            return f"{confidence} per pair"
        return f"{confidence} over all {self.family} configs' pairs together, Tukey-Kramer"

    @property
    def interval_text(self) -> str:
        """What a config's interval is, short enough for a legend: ``95% interval of the mean``, or
        family-wise ``95% comparison interval (Tukey-Kramer)`` (two apart differ beyond noise; the
        noise line says over which configs)."""
        if not self.family_wise_applies:
            return f"{100 * self.confidence:g}% interval of the mean"
        return f"{100 * self.confidence:g}% comparison interval (Tukey-Kramer)"

    def text(self) -> str:
        """The estimate as people read it, e.g. ``±0.052 per training (pooled sd, 4 degrees of freedom)``."""
        if not self.measured:
            return "not measured yet (no accuracy config trained twice)"
        source = degrees_of_freedom(self.df)
        if self.prior_df:
            own = f"{degrees_of_freedom(self.study_df)} from this study's replicates"
            own += "" if self.study_sd is None else f" (±{self.study_sd:.3f})"
            source = f"{own} + {self.prior_df} from the prior"
        return f"±{self.sd:.3f} per training (pooled sd, {source})"

    def shortfall(self) -> str:
        """How far a measured noise is from known, e.g. ``2 of the 3 degrees of freedom ranking needs``."""
        return f"{self.df} of the {self.min_df} degrees of freedom ranking needs (accuracy_min_df)"


@functools.cache
def _t_quantile(confidence: float, df: int) -> float:
    from scipy import stats  # not at import: the study file's keys need the rules, not scipy

    return float(stats.t.ppf(0.5 + confidence / 2, df))


@functools.cache
def _range_quantile(confidence: float, family: int, df: int) -> float:
    """The multiple of a difference's standard error beyond which it is a finding, for ``family``
    configs compared at once: the studentized range quantile over sqrt 2 (Student's t for two)."""
    if family <= 2:
        return _t_quantile(confidence, df)
    from scipy import stats

    return float(stats.studentized_range.ppf(confidence, family, df)) / math.sqrt(2)
