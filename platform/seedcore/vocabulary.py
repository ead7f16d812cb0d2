"""The vocabularies the parts share, one enum each: the words stored in SQL, sent over REST and written to
MLflow. Each is a `StrEnum`, so a member is its string (`SearchAlgorithm.TPE == "tpe"`) in JSON and SQL;
`values(Enum)` gives the strings for a pydantic `Literal[...]` (errors then list the plain words)."""

from __future__ import annotations

from enum import StrEnum


def values(vocabulary: type[StrEnum]) -> tuple[str, ...]:
    """The words of a vocabulary, in declaration order."""
    return tuple(member.value for member in vocabulary)


class SearchAlgorithm(StrEnum):
    """Which configs a sweep tries: Ray Tune's variant generator, or Optuna's TPE or QMC sampler."""

    RANDOM = "random"
    TPE = "tpe"
    QMC = "qmc"


class WarmStartMode(StrEnum):
    """What a sweep learns from before its first trial: nothing, the production version, or past sweeps."""

    NONE = "none"
    PRODUCTION = "production"
    HISTORY = "history"


class JobState(StrEnum):
    """Where a job is in its life; the last three are final."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class JobKind(StrEnum):
    """What a job does: a sweep, or one training run with fixed parameters."""

    TUNE = "tune"
    TRAIN = "train"


class Trigger(StrEnum):
    """What started a job: a person at the CLI, an API call, or (with its id after the colon) a schedule or
    a monitor: `schedule:<id>`, `monitor:<id>`; or a sweep re-run as a baseline of the sweep (job) whose id
    follows: `random_baseline:<id>`, `cold_baseline:<id>` (BASELINE_TRIGGERS)."""

    MANUAL = "manual"
    API = "api"
    SCHEDULE = "schedule:"
    MONITOR = "monitor:"
    RANDOM_BASELINE = "random_baseline:"
    COLD_BASELINE = "cold_baseline:"


class Baseline(StrEnum):
    """What a sweep is measured against when asked for (seedcore.organism.baselines): the same sweep re-run as
    a random search (smartness), or with warm start off (adaptability)."""

    RANDOM_SEARCH = "random_search"
    COLD_START = "cold_start"


# The trigger of each baseline's job: its prefix, then the id of the sweep it is a baseline of.
BASELINE_TRIGGERS = {Baseline.RANDOM_SEARCH: Trigger.RANDOM_BASELINE, Baseline.COLD_START: Trigger.COLD_BASELINE}


class PromotionStatus(StrEnum):
    """How a promotion ended: promoted, refused by the champion gate, already in production, failed, or not
    asked for."""

    SUCCESS = "success"
    REJECTED = "rejected"
    UNCHANGED = "unchanged"
    ERROR = "error"
    SKIPPED = "skipped"


class MonitorMetric(StrEnum):
    """What a monitor watches: live AUC or logloss from labelled predictions, input drift (PSI), the AUC
    of an evaluation run, or the AUC estimated without labels from the served probabilities
    (seedcore.monitoring.estimate)."""

    LIVE_AUC = "live_auc"
    LIVE_LOGLOSS = "live_logloss"
    PSI_MAX = "psi_max"
    EVALUATION_AUC = "evaluation_auc"
    ESTIMATED_AUC = "estimated_auc"


class CatchUp(StrEnum):
    """A schedule that missed its times while the server was down: run once now, or skip to the next."""

    RUN_ONCE = "run_once"
    SKIP = "skip"


class Concurrency(StrEnum):
    """A schedule due while its last job still runs: do not start, start another, or cancel the last."""

    FORBID = "forbid"
    ALLOW = "allow"
    REPLACE = "replace"
