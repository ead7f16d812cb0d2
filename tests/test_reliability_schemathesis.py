"""Schemathesis over our own `/openapi.json`, against the real app under a real server on a free port.

Every operation gets a bounded number of generated requests (sweeps are capped at 2 trials and a few
seconds by the server's settings); no answer may be a 5xx, and every answer must match its documented
status codes, content type and schema. The tally of one run is written beside the test's temp dir.
"""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, negative_data_rejection,
                                               response_schema_conformance, status_code_conformance)

from _reliability import live_server, tiny_settings
from _serving import add_version, wait_for

from seedcore.registry import Registry

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# Requests that break the schema (wrong types, missing fields, out-of-range numbers) must also be a 4xx.
NEGATIVE_CHECKS = [*CHECKS, negative_data_rejection]
# Operations that start sweeps or training: each valid request costs seconds, so they get fewer examples.
EXPENSIVE = r"^/xgboost/(tune|tune/submit|train)$"
TOKEN = "reliability-token"
# Every request carries the token (fixed, never negated), so negative cases break the data, not the auth.
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TALLY: Counter = Counter()


@pytest.fixture(scope="module")
def live(tmp_path_factory, mlflow_template, ray_session):
    root = tmp_path_factory.mktemp("schemathesis")
    settings = tiny_settings(root, mlflow_template, api_token=TOKEN)
    with live_server(settings) as server:
        # a production model, as a running platform has one (predict before any promotion is a 503 by design)
        add_version(settings, Registry(settings), promote=True)
        wait_for(lambda: server.request("GET", "/xgboost/model_info")[1]["status"] == "success", 30)
        yield server
    (root / "tally.json").write_text(json.dumps(TALLY, indent=1))
    print(f"\nschemathesis tally: {dict(TALLY)}")


def operations(live, *, expensive: bool) -> list:
    """The operations of our served document: the sweep-starting ones, or all the others."""
    schema = schemathesis.openapi.from_url(f"{live.base_url}/openapi.json")
    found = [result.ok() for result in schema.get_all_operations()]
    assert len(found) >= 15, "the document lost operations"
    return [op for op in found if bool(re.match(EXPENSIVE, op.path)) == expensive]


def call_and_check(case, live, checks) -> None:
    """One generated request; count it, its 5xx and its schema violations, then fail on any of them."""
    response = case.call(base_url=live.base_url, timeout=120)
    TALLY["requests"] += 1
    TALLY["5xx"] += response.status_code >= 500
    TALLY[f"status {response.status_code}"] += 1
    try:
        case.validate_response(response, checks=checks)
    except Exception:
        TALLY["violations"] += 1
        raise


def fuzz(operation, live, examples: int, mode: GenerationMode = GenerationMode.POSITIVE) -> str | None:
    """Up to `examples` generated requests to one operation; the first failure, described, or None."""
    checks = NEGATIVE_CHECKS if mode is GenerationMode.NEGATIVE else CHECKS

    @given(case=operation.as_strategy(mode, headers=AUTH))
    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None,
              phases=[Phase.explicit, Phase.generate], derandomize=True)
    def run(case):
        call_and_check(case, live, checks)

    try:
        run()
    except (KeyboardInterrupt, SystemExit):
        raise
    except Unsatisfiable:  # nothing to break: an operation with no input has no negative case
        return None
    except BaseException as exc:  # noqa: BLE001 - schemathesis raises exception groups; every operation still runs
        return f"{mode} {operation.method.upper()} {operation.path}: {str(exc)[:1500]}"
    return None


def test_every_operation_answers_by_its_schema(live):
    failures = [f for op in operations(live, expensive=False) for mode in GenerationMode
                if (f := fuzz(op, live, 20, mode))]
    assert not failures, "\n\n".join(failures)


def test_sweeps_and_training_answer_by_their_schema(live):
    failures = [f for op in operations(live, expensive=True) if (f := fuzz(op, live, 5))]
    assert not failures, "\n\n".join(failures)


# A request valid by the document may still be refused for a rule no schema states (a choice between two
# fields, lengths that must agree, the content of the sweep request a monitor carries), never for a range.
UNSTATED_RULES = {
    ("POST", "/xgboost/monitors"): ("threshold", "max_drop", "tune"),
    ("PATCH", "/xgboost/monitors/{monitor_id}"): ("threshold", "max_drop", "tune"),
    ("POST", "/xgboost/feedback"): ("prediction_ids", "labels", "instances"),
}


def refused_only_for_unstated_rules(ctx, response, case) -> None:
    """A schema-valid request's 400 names a field only a rule across fields can refuse."""
    if response.status_code != 400:
        return None
    field = (response.json().get("field") or "").split(".")[0]
    allowed = UNSTATED_RULES[(case.method.upper(), case.operation.path)]
    if field not in allowed:
        raise AssertionError(f"schema-valid input refused for {field!r}: {response.json()['error']}")
    return None


def test_schema_valid_input_is_not_refused_for_its_range(live):
    """Positive data for the operations whose ranges the outside tester found wider in the document than on
    the server (a monitor's `threshold` of 1.9e118 was valid by the document, a 400 from the server)."""
    tune = {"space_type": "conservative", "config_type": "conservative",
            "custom_tune_config": {"num_samples": 1, "time_budget_s": 5}}
    status, created, _ = live.request("POST", "/xgboost/monitors", json.dumps(
        {"name": "fuzzed", "metric": "live_auc", "threshold": 0.5, "tune": tune}),
        {**AUTH, "Content-Type": "application/json"})
    assert status == 201, created
    schema = schemathesis.openapi.from_url(f"{live.base_url}/openapi.json")
    failures = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) not in UNSTATED_RULES:
            continue
        fixed = {"monitor_id": created["id"]} if "{monitor_id}" in operation.path else None

        @given(case=operation.as_strategy(GenerationMode.POSITIVE, headers=AUTH, path_parameters=fixed))
        @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None,
                  phases=[Phase.explicit, Phase.generate], derandomize=True)
        def run(case):
            call_and_check(case, live, [*CHECKS, refused_only_for_unstated_rules])

        try:
            run()
        except BaseException as exc:  # noqa: BLE001 - every operation still runs; failures are listed
            failures.append(f"{operation.method.upper()} {operation.path}: {str(exc)[:1500]}")
    assert not failures, "\n\n".join(failures)
