"""A study's results as objects a notebook can hold: ``search.load_study(path) -> StudyResults``.

The CLI's result commands (``report``, ``plot``, ``export``) read studies through this module too,
so a notebook and the command line show the same front and pick the same configuration.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

from search.errors import InputError
from search.results._export import ExportChoice, choice_lines, choose_config, noise_text
from search.results._frame import front, full_front_frame, hypervolume, status_counts
from search.study._record_files import RecordFiles
from search.study._space import KNOBS
from search.study._spec import memory_axis
from search.study._stored import read_trial, read_trials
from search.units import parse_size, whole_number

if TYPE_CHECKING:
    import optuna

    from search.accuracy._estimates import AccuracyEstimates
    from search.probe._run import ProbeResult
    from search.results._notebook import WithImage
    from search.results._plot import ParetoPlotData
    from search.study._spec import StudySpec

__all__ = ["StudyResults", "memory_note"]


class StudyResults:
    """A study read from its storage: every finished trial, its front, and what export would pick.

    Made by :func:`load_study`; reading never changes the study.

    Attributes:
        spec: The study definition.
        study: The Optuna study (read-only use: Optuna's own plots and tools take it as it is).
        trials: One row per finished trial (the ``report --all`` columns), with
            ``predicted_full_bytes``, each configuration's peak predicted for the whole dataset
            (None where the dataset is not at hand, or where the trial trained on all of it: its
            own peak is the whole dataset's).
        estimates: Each accuracy config's mean, interval and replicates, and the study's noise.
        memory_model: The memory model behind those predictions (a dict), or None.
        probes: The probes of the study's dataset on this machine (:mod:`search.probe`).
        dataset_note: Why the whole-dataset figures are missing (the dataset is not at hand), or None.
    """

    def __init__(
        self,
        *,
        spec: StudySpec,
        study: optuna.Study,
        trials: pd.DataFrame,
        estimates: AccuracyEstimates,
        memory_model: dict[str, Any] | None,
        record_files: RecordFiles | None = None,
        probes: list[ProbeResult] | None = None,
        dataset_note: str | None = None,
    ) -> None:
        self.spec = spec
        self.probes = list(probes or [])
        self.dataset_note = dataset_note
        self.study = study
        self.trials = trials
        self.estimates = estimates
        self.memory_model = memory_model
        self._record_files = record_files

    def record(self, number: int) -> dict[str, Any] | None:
        """Trial ``number``'s whole record, with its memory series and log tail.

        Args:
            number: The trial's number (column ``number`` of :attr:`trials`).

        Returns:
            The record as the trial stored it (:class:`search.TrialRecord`'s fields), with the bulky
            parts read back from ``<name>.records/`` beside the study file (left out when that
            folder was not copied with the storage); None for a trial that stored no record (one
            whose worker died, failed by the heartbeat check).

        Raises:
            InputError: If the study has no trial of that number.
        """
        trials = self.study.get_trials(deepcopy=False)
        index = whole_number(number)  # an int, or numpy's from a frame's column
        if index is None or not 0 <= index < len(trials):
            raise InputError(f"study {self.spec.name!r} has no trial {number!r}")
        return read_trial(trials[index]).full_record(self._record_files)

    @property
    def accuracy(self) -> str:
        """The accuracy objective (column name), e.g. ``map50_95``."""
        return self.spec.objectives[0]

    @property
    def accuracy_name(self) -> str:
        """The accuracy objective as plots and tables name it, e.g. ``mAP50-95``."""
        from search.results._plot import ACCURACY_NAMES

        return ACCURACY_NAMES[self.accuracy]

    def front(self) -> pd.DataFrame:
        """The noise-aware front (accuracy configs against the study's memory objective: peak host
        memory, or peak GPU memory), least memory first.

        Returns:
            The rows of :attr:`trials` that stand for the front's points (indexed by trial number,
            every column of :attr:`trials`): one per point, its accuracy config's first trial at its
            leanest system setting, whose ``accuracy_mean``, ``accuracy_low``, ``accuracy_high``
            and ``replicates`` are the config's and ``front_memory_bytes`` what the front ranked.
        """
        return front(self.trials)

    @property
    def front_memory(self) -> str:
        """The memory the front ranks, in words: ``host`` or ``GPU``."""
        return "host" if self.spec.memory_axis == "host" else "GPU"

    @property
    def front_limit_bytes(self) -> int | None:
        """The limit of the memory the front ranks: the study's ``memory_limit``; on GPU memory its
        ``gpu_memory_limit``, else the GPU's own memory (the largest a training recorded), None
        before any training recorded one."""
        if self.spec.memory_axis == "host":
            return self.spec.memory_limit
        if self.spec.gpu_memory_limit is not None:
            return self.spec.gpu_memory_limit
        totals = pd.to_numeric(self.trials["gpu_total_bytes"], errors="coerce").dropna()
        return None if totals.empty else int(totals.max())

    @property
    def front_has_a_limit(self) -> bool:
        """Whether :attr:`front_limit_bytes` is a limit the study set (not the GPU's own memory)."""
        return self.spec.memory_axis == "host" or self.spec.gpu_memory_limit is not None

    def full_front(self) -> pd.DataFrame:
        """The front over all five knobs (:func:`search.accuracy.full_front`), least memory first.

        One row per full config: its knobs, its accuracy config's ``accuracy_mean``/``low``/``high``
        and ``replicates``, its ``peak_host_bytes`` and ``epoch_seconds`` on the whole dataset and
        where they come from (``memory_source``), the ``trial`` that trained it and the ``probe``
        that measured it (None when there is none). With ``epoch_seconds`` an objective or any probe
        stored, speed counts: a setting that buys speed with memory stays on it, when its lead is
        beyond the epoch time's spread (:data:`~search.accuracy.SPEED_SPREAD`).
        """
        return full_front_frame(self.estimates, speed=self.speed_counts)

    @property
    def speed_counts(self) -> bool:
        """Whether the five-knob front weighs epoch time (an objective, or probes measured it)."""
        return "epoch_seconds" in self.spec.objectives or bool(self.probes)

    @property
    def accuracy_signal(self) -> bool:
        """Whether any two accuracy configs differ beyond noise (else nothing ranks on accuracy)."""
        return self.estimates.signal

    @property
    def memory_note(self) -> str | None:
        """What ``report``, ``plot`` and ``export`` say when the study's memory objective is not the
        memory they rank on; else None."""
        return memory_note(self.spec.objectives)

    def accuracy_note(self) -> str | None:
        """What ``run``, ``report`` and ``export`` say when accuracy cannot rank the configs; else None."""
        return self.estimates.signal_text()

    def speed_note(self) -> str | None:
        """What ``report`` and ``export`` say when one setting's own trainings ran at speeds apart
        by more than the spread speed is ranked by (:func:`search.accuracy.speed_repeats_apart`);
        else None."""
        from search.accuracy import SPEED_SPREAD, speed_repeats_apart

        ok = self.trials[(self.trials["status"] == "ok") & self.trials["duplicate_of"].isna()]
        runs: dict[tuple[Any, ...], list[tuple[int, float]]] = {}
        for row in ok.itertuples():
            seconds = row.epoch_seconds
            if seconds is not None and seconds == seconds:
                key = tuple(getattr(row, knob) for knob in ("batch", "imgsz", "cache", "workers", "amp"))
                runs.setdefault(key, []).append((int(row.number), float(seconds)))
        apart = speed_repeats_apart(runs.values())
        if not apart:
            return None
        (fast, fast_s), (slow, slow_s) = apart[0]
        configs = "1 setting's trainings" if len(apart) == 1 else f"{len(apart)} settings' trainings"
        return (
            f"speed: {configs} ran apart by more than the {SPEED_SPREAD:.0%} spread speed is ranked by "
            f"(e.g. trial {fast}: {fast_s:.2f} s/epoch, trial {slow}: {slow_s:.2f} s, the same knobs, "
            f"{slow_s / fast_s:.1f}x): the machine's speed moved while they ran (shared, or busy), so "
            "rankings by speed may not hold"
        )

    def unranked_lines(self) -> list[str]:
        """What ``run`` and ``report`` say of accuracy configs missing from the front for want of a
        result (an empty front, or configs whose trainings were all cut by a time limit), with what
        to change; empty when there is nothing to say."""
        from search.study._unranked import unranked_lines

        return unranked_lines(read_trials(self.study.get_trials(deepcopy=False)), self.spec)

    def hypervolume(self) -> float:
        """The front's hypervolume in accuracy x GiB under its memory's limit (what ``report`` prints;
        :attr:`front_limit_bytes`)."""
        return hypervolume(self.trials, accuracy=self.accuracy, memory_limit=self.front_limit_bytes)

    def status_counts(self) -> dict[str, int]:
        """Trials per status, duplicate proposals not counted."""
        return status_counts(self.trials)

    def choice(
        self,
        max_memory: int | float | str | None = None,
        *,
        max_gpu_memory: int | float | str | None = None,
        check_prediction: bool = True,
    ) -> ExportChoice:
        """What ``memfront export --max-memory`` picks for this budget, and what it passed over.

        Args:
            max_memory: The host memory budget, in bytes or as a size such as ``"4GiB"`` (default:
                the study's ``memory_limit``, which every trial ran under).
            max_gpu_memory: A GPU memory budget (``export --max-gpu-memory``): only accuracy
                configs whose trainings' highest GPU peak fits it take part.
            check_prediction: Refuse a trial whose whole-dataset prediction exceeds the budget
                (``export --ignore-prediction`` is ``False``).

        Raises:
            InputError: For a size that is not a size, or a GPU budget for a study that measured
                no GPU memory.
        """
        return choose_config(
            self.trials,
            self.estimates,
            max_memory_bytes=self._host_budget(max_memory),
            max_gpu_bytes=self._gpu_budget(max_gpu_memory),
            check_prediction=check_prediction,
        )

    def explain(
        self,
        max_memory: int | float | str | None = None,
        *,
        max_gpu_memory: int | float | str | None = None,
        check_prediction: bool = True,
    ) -> list[str]:
        """What ``export`` prints about its choice: interval, runner-up, what the system setting buys.

        Args:
            max_memory: The host memory budget (:meth:`choice`'s).
            max_gpu_memory: A GPU memory budget (:meth:`choice`'s).
            check_prediction: :meth:`choice`'s.

        Returns:
            The lines, or, when nothing fits, the one line saying so and what came closest.

        Raises:
            InputError: As :meth:`choice`.
        """
        budget = self._host_budget(max_memory)
        choice = self.choice(budget, max_gpu_memory=max_gpu_memory, check_prediction=check_prediction)
        return choice_lines(choice, self.estimates, accuracy=self.accuracy, budget=budget)

    def best(
        self,
        max_memory: int | float | str | None = None,
        *,
        max_gpu_memory: int | float | str | None = None,
        check_prediction: bool = True,
    ) -> pd.Series | None:
        """What ``memfront export`` exports for this budget: :meth:`choice`'s ``chosen``.

        Args:
            max_memory: The host memory budget, in bytes or as a size such as ``"4GiB"`` (default:
                the study's ``memory_limit``).
            max_gpu_memory: A GPU memory budget (:meth:`choice`'s).
            check_prediction: :meth:`choice`'s.

        Returns:
            A row of :attr:`trials`: the chosen setting's first trial (``probe`` names the probe that
            measured it, if any; with ``probed_only`` no trial trained that setting, and the row is
            its accuracy config's first trial with the probed setting and figures), or None when
            nothing fits.

        Raises:
            InputError: As :meth:`choice`.
        """
        return self.choice(
            max_memory, max_gpu_memory=max_gpu_memory, check_prediction=check_prediction
        ).chosen

    def _host_budget(self, max_memory: int | float | str | None) -> int:
        return self.spec.memory_limit if max_memory is None else _budget(max_memory, "max_memory")

    def _gpu_budget(self, max_gpu_memory: int | float | str | None) -> int | None:
        if max_gpu_memory is None:
            return None
        budget = _budget(max_gpu_memory, "max_gpu_memory")
        if all(e.peak_gpu_bytes is None for e in self.estimates.configs.values()):
            raise InputError(
                f"a GPU budget needs GPU figures, and no training of this study measured one (device "
                f"{self.spec.device})"
            )
        return budget

    def plot_data(self) -> ParetoPlotData:
        """The plain structure both plot renderers draw.

        Raises:
            InputError: For a study that ranks GPU memory before any training recorded some.
        """
        from search.results._plot import pareto_plot_data

        limit = self.front_limit_bytes
        if limit is None:
            raise InputError(
                f"study {self.spec.name!r} ranks GPU memory, and no training of it recorded any yet: "
                "nothing to plot"
            )
        return pareto_plot_data(
            self.trials,
            accuracy=self.accuracy,
            memory_limit=limit,
            memory=self.spec.memory_axis,
            limit_name=None if self.front_has_a_limit else "the GPU's memory",
            study_name=self.spec.name,
            noise=noise_text(self.estimates),
            interval_name=self.estimates.noise.interval_text,
        )

    def figure(self, backend: str = "plotly") -> Any:
        """The Pareto plot: a plotly ``Figure``, or with ``backend="matplotlib"`` a matplotlib ``Figure``.

        Args:
            backend: ``plotly`` (interactive) or ``matplotlib``.

        Raises:
            InputError: For another backend, or as :meth:`plot_data`.
        """
        from search.results import _render as plot

        if backend == "plotly":
            return plot.render_plotly(self.plot_data())
        if backend == "matplotlib":
            return plot.matplotlib_figure(self.plot_data())
        raise InputError(f"backend must be plotly or matplotlib, not {backend!r}")

    def show(self) -> WithImage:
        """The Pareto plot as one notebook output: interactive where Jupyter can draw plotly, a PNG
        where it cannot (a code host, nbviewer). Outside a notebook, ``.save("front.png")`` (or
        ``.html``) writes it; :meth:`figure` gives a figure for other formats; ``memfront plot``
        writes PNG, SVG, PDF or HTML.

        Raises:
            InputError: As :meth:`plot_data`.
        """
        from search.results import _render as plot
        from search.results._notebook import WithImage

        data = self.plot_data()
        return WithImage(plot.render_plotly(data), plot.matplotlib_figure(data))

    def knob_plot(self, x: str, colour: str) -> WithImage:
        """Peak host memory against knob ``x`` (e.g. ``imgsz``), coloured by knob ``colour`` (e.g. ``cache``).

        Args:
            x: The knob on the x axis.
            colour: The knob whose values colour the points.

        Raises:
            InputError: For a name that is not a knob.
        """
        from search.results._notebook import knob_plot

        for name in (x, colour):
            if name not in KNOBS:
                raise InputError(f"{name!r} is not a knob: one of {', '.join(KNOBS)}")
        title = f"peak host memory vs {x}, by {colour}"
        return knob_plot(self.trials, memory_limit=self.spec.memory_limit, x=x, colour=colour, title=title)


def memory_note(objectives: list[str]) -> str | None:
    """The one statement of what a ``peak_gpu`` study's views rank on, or None.

    Its front ranks GPU memory, one figure per accuracy config; the five-knob front, the probes and
    the memory model, and export's ``--max-memory`` weigh host memory (the system settings live
    there). Saying so keeps a GPU user from reading one as the other.
    """
    if memory_axis(objectives) == "host":
        return None
    return (
        "memory objective peak_gpu: the front ranks each accuracy config's median GPU peak over its "
        "trainings (cache and workers do not change it); the front over all five knobs and export "
        "--max-memory weigh host memory, export --max-gpu-memory a GPU budget"
    )


def _budget(size: int | float | str, name: str) -> int:
    try:
        return parse_size(size.item() if hasattr(size, "item") else size)  # numpy scalars from a frame
    except ValueError as error:
        raise InputError(f"{name}: {error}") from None
