"""Why accuracy configs are missing from the front, and what to change: ``run`` and ``report`` say it.

A study whose trainings all ended without a result (cut by a time limit, over the memory limit,
failed) has an empty front, and the status counts alone (``timeout 3``) do not say what to do.
Configs whose trainings were only ever cut by a time limit are missing from a front that is not
empty, for a reason of the set-up, not of the configs. Each cause gets its own line and remedy.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from search.accuracy._trainings import accuracy_key
from search.study._budget import END_GAME_MARGIN, retry_below_s
from search.study._space import KNOBS, KnobRoles, effective_space, leanest_accuracy, leanest_system
from search.study._spec import StudySpec
from search.study._stored import INFEASIBLE_STATUSES, StoredTrial
from search.trial._record import error_line
from search.units import format_bytes, format_seconds, plural

__all__ = ["unranked_lines"]


def unranked_lines(trials: Sequence[StoredTrial], spec: StudySpec) -> list[str]:
    """What ``run`` and ``report`` say of accuracy configs missing from the front for want of a
    result; empty when there is nothing to say.

    With no training ended within its limits, a heading and one line per cause (time, memory,
    failures) with its remedy. Otherwise one line on the accuracy configs whose trainings were all
    cut by a time limit, when there are any (configs only over the memory limit are what a memory
    search finds, and failures are counted in ``status``).

    Args:
        trials: The study's stored trials.
        spec: The study file as it is now (its limits, epochs, ``train_images``, ``n_trials``).
    """
    roles = KnobRoles.of(spec.framework)
    counted = [t for t in trials if t.counts_toward_n_trials and t.config is not None]
    ranked = {accuracy_key(t.config, roles) for t in counted if t.status == "ok" and t.config}
    cut = [t for t in counted if t.status == "timeout"]
    if ranked:
        only_cut = [t for t in cut if t.config and accuracy_key(t.config, roles) not in ranked]
        configs = {accuracy_key(t.config, roles) for t in only_cut if t.config}
        if not configs:
            return []
        knobs = ", ".join(roles.accuracy)
        return [
            f"not on the front: {plural(len(configs), 'accuracy config')} ({knobs}) whose "
            f"trainings were all cut by a time limit; {_time_remedy(only_cut, spec, counted)}"
        ]
    causes = []
    if cut:
        causes.append(f"{_count(cut)} cut by a time limit; {_time_remedy(cut, spec, counted)}")
    over = [t for t in counted if t.status in INFEASIBLE_STATUSES]
    if over:
        causes.append(f"{_count(over)} over the memory limit ({_memory_remedy(over, spec)}")
    # Failed trainings do not count toward n_trials (no verdict on their configs), but say why.
    failed = [t for t in trials if t.status == "failed" and t.state.is_finished() and not t.proposal_only]
    if failed:
        errors = Counter(_error_line(t) for t in failed)
        common, _ = errors.most_common(1)[0]
        often = f" (most often: {common})" if common else ""
        causes.append(f"{_count(failed)} failed{often}: `memfront report --all` lists each error")
    if not causes:
        return []
    return ["the front is empty: no training ended with a result", *(f"  {line}" for line in causes)]


def _time_remedy(cut: Sequence[StoredTrial], spec: StudySpec, counted: Sequence[StoredTrial]) -> str:
    """What to change for trainings cut by a time limit: the limit, or a shorter training."""
    allowed = spec.time_allowed_s
    again = [t for t in cut if t.cut_short(retry_below_s(spec))]
    more = "" if len(counted) < spec.n_trials else f", with a higher n_trials (all {spec.n_trials} are done)"
    if len(again) == len(cut):
        # Cut by what was left of a run's timeout (a busy machine stretches trainings past the
        # bound the trainings before gave them), or under a limit the study file has raised since.
        return (
            f"each ran under a limit well below what the study file now allows "
            f"({_limits_text(spec)}): the next run trains {'it' if len(cut) == 1 else 'them'} again{more}"
        )
    if allowed is None:
        limit = "the time limit"  # a legacy record without its limit
    elif spec.trial_time_limit == allowed:
        limit = f"trial_time_limit ({format_seconds(allowed)})"
        if spec.timeout is not None and spec.timeout < END_GAME_MARGIN * allowed:
            # No run would start the config again under the timeout as it is.
            limit += f" and with it timeout ({format_seconds(spec.timeout)}), which caps a training too"
    else:
        limit = f"timeout ({format_seconds(allowed)})"
    shorter = ["fewer epochs"] if spec.epochs > 1 else []
    shorter.append("fewer train_images" if spec.train_images is not None else "a train_images subset")
    shorter.append("a smaller imgsz")
    # Trainings of other epochs or images are not comparable with the study's: a new study.
    return (
        f"raise {limit} and run again (a config cut at a limit the study file's exceeds by "
        f"{_margin_text()} trains again{more}), or shorten a training ({', '.join(shorter)}) under a "
        "new study name"
    )


def _memory_remedy(over: Sequence[StoredTrial], spec: StudySpec) -> str:
    """What to change when every training went over the memory limit."""
    skipped = sum(t.status == "predicted" for t in over)
    limits = format_bytes(spec.memory_limit) + " host"
    levers = "a smaller batch or imgsz, fewer workers, cache none"
    raise_keys = "memory_limit"
    if spec.gpu_memory_limit is not None or spec.memory_axis == "gpu":
        if spec.gpu_memory_limit is not None:
            limits += f", {format_bytes(spec.gpu_memory_limit)} GPU"
            raise_keys = "memory_limit or gpu_memory_limit"
        levers = "a smaller batch or imgsz, amp on for GPU memory; fewer workers, cache none for host memory"
    predicted = f"; {skipped} predicted over it by pre-flight, not trained" if skipped else ""
    keep = "under a new study name (a study keeps the limit its trials were judged by)"
    choices = effective_space(spec).choices
    leanest = {**leanest_accuracy(choices), **leanest_system(choices)}
    # Measured over the host limit (not predicted by pre-flight, nor a CUDA out-of-memory error,
    # which is stored as over the limit with its host peak below it).
    at_leanest = [
        peak for t in over
        if t.config and all(t.config.get(k) == leanest[k] for k in KNOBS) and t.status == "memory_limit"
        and (peak := t.figures["peak_host_bytes"]) is not None and peak >= spec.memory_limit
    ]  # fmt: skip
    if at_leanest and spec.memory_axis == "host" and spec.gpu_memory_limit is None:
        # Narrowing the space cannot help: nothing in it needs less than what went over.
        needs = f" needs at least {format_bytes(max(at_leanest))}"
        knobs = ", ".join(f"{k} {_knob_text(leanest[k])}" for k in KNOBS)
        return f"{limits}{predicted}): the space's leanest config ({knobs}){needs}: raise memory_limit {keep}"
    return f"{limits}{predicted}): narrow the space ({levers}) or raise {raise_keys} {keep}"


def _knob_text(value: object) -> str:
    return {True: "on", False: "off"}.get(value, str(value)) if isinstance(value, bool) else str(value)


def _margin_text() -> str:
    return f"{100 * (END_GAME_MARGIN - 1):.0f}% or more"


def _limits_text(spec: StudySpec) -> str:
    parts = []
    if spec.trial_time_limit is not None:
        parts.append(f"trial_time_limit {format_seconds(spec.trial_time_limit)}")
    if spec.timeout is not None:
        parts.append(f"timeout {format_seconds(spec.timeout)}")
    return ", ".join(parts) or "no time limit"


def _error_line(trial: StoredTrial) -> str | None:
    record = trial.record or {}
    return error_line(record.get("error"), data=(record.get("requested") or {}).get("data"), width=120)


def _count(trials: Sequence[StoredTrial]) -> str:
    return plural(len(trials), "training")
