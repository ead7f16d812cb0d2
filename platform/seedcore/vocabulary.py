"""The vocabularies the parts share, one enum each: the words stored in SQL, sent over REST and written to
MLflow. Each is a `StrEnum`, so a member is its string (`SearchAlgorithm.TPE == "tpe"`) in JSON and SQL."""

from __future__ import annotations

from enum import StrEnum


class SearchAlgorithm(StrEnum):
    """Which configs a sweep tries: Ray Tune's variant generator, or Optuna's TPE or QMC sampler."""

    RANDOM = "random"
    TPE = "tpe"
    QMC = "qmc"
