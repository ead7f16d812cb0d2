"""A sweep's baselines, run only when asked for: the same sweep again (same data, space, num_samples and seed,
warm start off, nothing promoted) as a random search, or cold (the same searcher, warm start off).

Each costs a whole sweep of the same size, hence on demand (`POST /xgboost/evolution/baselines`,
`seedcore evolution baseline JOB_ID --kind ...`). Its job's trigger names the sweep: `random_baseline:<id>`,
`cold_baseline:<id>` (seedcore.vocabulary.BASELINE_TRIGGERS); a baseline is never a sweep of its own in
evolution. With one, evolution measures against it (`paired`); without, by its reshuffle and cold-sweep rules.

    request, trigger = baseline_request(settings, job, "random_search")   # 4xx naming the field
    runner.submit(request, trigger=trigger)
    finished_sweeps(db, limit)   # the sweeps, each with its latest succeeded baselines: one query
"""

from __future__ import annotations

from typing import Callable

import pydantic
from sqlalchemy import String, literal, or_, select

from seedcore.config import Settings
from seedcore.db.database import Database
from seedcore.db.tables_jobs import JOB_SUCCEEDED, KIND_TUNE, TuningJob
from seedcore.errors import ConflictError, ValidationError
from seedcore.request_models import TuneRequest
from seedcore.vocabulary import BASELINE_TRIGGERS, Baseline, SearchAlgorithm, WarmStartMode

# What each baseline's axes replace in the sweep's: smartness_baseline and adaptability_baseline say which held.
RANDOM_ORDER, SAME_DATA_COLD = "random_order", "same_data_cold"  # without one: the reshuffle, the cold sweeps
PAIRED_COLD = "paired_cold"


def baseline_of(trigger: str | None) -> tuple[Baseline, str] | None:
    """(kind, the sweep's job id) when `trigger` is a baseline's, else None."""
    for kind, prefix in BASELINE_TRIGGERS.items():
        if trigger and trigger.startswith(prefix):
            return kind, trigger[len(prefix):]
    return None


def baseline_request(settings: Settings, job: dict, kind: str) -> tuple[TuneRequest, str]:
    """The request and trigger of `kind`'s baseline of `job` (a job row as a dict): the job's stored request with
    warm start off, no promotion, the num_samples and seed the sweep ran pinned, and for random_search the
    random searcher. 409 for a
    job that is not a succeeded sweep (yet); 400 naming `job_id` for a train job or a baseline, `kind` for a
    baseline that would only repeat the sweep."""
    job_id, kind = job["id"], Baseline(kind)
    if job.get("kind") != KIND_TUNE:
        raise ValidationError(f"job {job_id} is a {job.get('kind')} job: only a sweep (tune) has baselines",
                              field="job_id")
    if job.get("state") != JOB_SUCCEEDED:
        raise ConflictError(f"job {job_id} is {job.get('state')}: a baseline is run for a succeeded sweep only",
                            field="job_id")
    if (of := baseline_of(job.get("trigger"))) is not None:
        raise ValidationError(f"job {job_id} is itself the {of[0]} baseline of job {of[1]}: ask for the "
                              "baselines of that sweep", field="job_id")
    try:
        request = TuneRequest.model_validate(job["request"])
    except pydantic.ValidationError as exc:
        raise ConflictError(f"job {job_id}'s stored request cannot be read back: {exc.errors()[0]['msg']}",
                            field="job_id") from exc
    ran = _tune_config(settings, job, request)
    cold = request.warm_start == WarmStartMode.NONE
    if kind == Baseline.COLD_START and cold:
        raise ValidationError(f"job {job_id} was not warm-started: its cold_start baseline would repeat it; "
                              "ask for random_search", field="kind")
    if kind == Baseline.RANDOM_SEARCH and cold and ran["search_alg"] == SearchAlgorithm.RANDOM:
        raise ValidationError(f"job {job_id} already is a cold random search: its random_search baseline would "
                              "repeat it", field="kind")
    custom = {**(request.custom_tune_config or {}), "num_samples": ran["num_samples"]}
    if ran.get("seed") is not None:
        custom["seed"] = ran["seed"]
    if kind == Baseline.RANDOM_SEARCH:
        custom["search_alg"] = SearchAlgorithm.RANDOM.value
    baseline = TuneRequest.model_validate({**request.model_dump(), "custom_tune_config": custom, "promote": False,
                                           "force": False, "warm_start": WarmStartMode.NONE.value})
    return baseline, f"{BASELINE_TRIGGERS[kind]}{job_id}"


def _tune_config(settings: Settings, job: dict, request: TuneRequest) -> dict:
    """The tune config the sweep ran (its result's `tune_config`: num_samples, seed, search_alg), or for a result
    without one, its request's resolved now."""
    ran = (job.get("result") or {}).get("tune_config")
    if isinstance(ran, dict) and isinstance(ran.get("num_samples"), int) and ran.get("search_alg"):
        return ran
    from seedcore.tuning.plan import tune_settings  # Ray Tune: loaded when first asked for

    return tune_settings(settings, request).as_dict()


def queue_baseline(settings: Settings, job: dict, kind: str, submit: Callable[[TuneRequest, str], dict]) -> dict:
    """`baseline_request`, handed to `submit(request, trigger)` (the job runner's), whose answer it returns. A
    400 of the sweep's own request (its data file gone, a cap lowered since) names `job_id`: the caller sent
    nothing else it could be about."""
    request, trigger = baseline_request(settings, job, kind)
    try:
        return submit(request, trigger)
    except ValidationError as exc:
        raise ValidationError(f"job {job['id']}'s sweep cannot run again as it was asked for: {exc.message}",
                              field="job_id") from exc


def finished_sweeps(db: Database, limit: int) -> list[dict]:
    """The latest `limit` succeeded jobs that registered a version and are no baseline, oldest first, each with
    `baselines`: {kind: its latest succeeded baseline job}. One query (the sweeps and their baselines)."""
    done = (TuningJob.state == JOB_SUCCEEDED, TuningJob.result.is_not(None))
    is_baseline = or_(*(TuningJob.trigger.startswith(p, autoescape=True) for p in BASELINE_TRIGGERS.values()))
    latest = select(TuningJob.id).where(*done, ~is_baseline).order_by(TuningJob.finished_at.desc()).limit(limit)
    latest = latest.cte("latest_sweeps")
    paired = [TuningJob.trigger.in_(select(literal(p, String) + latest.c.id)) for p in BASELINE_TRIGGERS.values()]
    with db.session() as session:
        rows = session.scalars(select(TuningJob).where(*done, or_(TuningJob.id.in_(select(latest.c.id)), *paired))
                               .order_by(TuningJob.finished_at.desc())).all()
        jobs = [{"id": r.id, "trigger": r.trigger, "result": r.result,
                 "finished_at": r.finished_at.isoformat() if r.finished_at else None} for r in rows]
    sweeps, baselines = [], {}
    for job in reversed(jobs):  # oldest first: a later baseline of the same kind replaces an earlier one
        of = baseline_of(job["trigger"])
        if of is not None:
            baselines.setdefault(of[1], {})[of[0].value] = job
        elif isinstance(job["result"], dict) and job["result"].get("model_version"):
            sweeps.append(job)
    return [{**job, "baselines": baselines.get(job["id"], {})} for job in sweeps]


def paired(axes: dict, stats: dict[str, dict]) -> None:
    """Measure a sweep's `axes` in place against its baselines' `stats` ({kind: {job_id, curve_area,
    trials_to_99, best}}): smartness against the random search, trials_saved against the paired cold sweep; the
    reshuffle and the same-data cold sweeps (filled before) where there is none."""
    random, cold = stats.get(Baseline.RANDOM_SEARCH.value), stats.get(Baseline.COLD_START.value)
    axes["smartness_baseline"] = RANDOM_ORDER
    axes["adaptability_baseline"] = None if axes.get("trials_saved") is None else SAME_DATA_COLD
    if random is not None:
        axes[Baseline.RANDOM_SEARCH.value] = random
        if axes["curve_area"] is not None and random["curve_area"] is not None:
            axes["smartness"] = axes["curve_area"] - random["curve_area"]
            axes["smartness_baseline"] = Baseline.RANDOM_SEARCH.value
    if cold is not None:
        axes[Baseline.COLD_START.value] = cold
        if axes["warm_start"] != WarmStartMode.NONE and None not in (axes["trials_to_99"], cold["trials_to_99"]):
            axes["trials_saved"] = cold["trials_to_99"] - axes["trials_to_99"]
            axes["adaptability_baseline"] = PAIRED_COLD
