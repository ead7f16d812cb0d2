"""Schemathesis over our own `/openapi.json`, against the real app under a real server on a free port.

One bounded pass of the engine `python -m bench fuzz` runs (bench/fuzz.py): every phase (examples, coverage,
fuzzing, and stateful sequences over the links Schemathesis infers from `Location` headers and the document),
every check it has but object-level authorization (which needs a second user) and response time, with the token
on every request. The server is set as the bench sets it: presets trimmed to 2 trials, a queue of 3 jobs.
No answer may be a 5xx and no check may fail: status codes, content types, headers and bodies as documented,
schema-violating input refused (4xx), schema-valid input accepted unless a rule no schema can state refuses it
(`bench.fuzz.UNSTATED_RULES`: a 400 naming one of the fields listed for that operation), auth not ignored,
deleted resources gone, created ones there. The pass must reach every documented operation, run every phase
and send the newer fields. The tally is written beside the test's temp dir.
"""

from __future__ import annotations


import pytest

from _reliability import live_server, tiny_settings
from _serving import add_version, wait_for

from seedcore.promotion.registry import Registry

from bench.fuzz import SERVER_SETTINGS, UNSTATED_RULES, fuzz

pytestmark = pytest.mark.integration

EXAMPLES = 5  # per operation and phase: about 2,000 requests
# The engine stops here even mid-pass (the reach asserts below would then fail). A pass takes about 60 s on an
# idle 2-CPU machine; the budget leaves room for a loaded one (a run under coverage hit 80 s before the
# stateful phase reached its linked operations).
BUDGET_S = 200.0
PHASES = {"examples", "coverage", "fuzzing", "stateful"}
# Fields that came with the queue cap, schedule concurrency, per-monitor sweep budgets and schema-change promotion.
NEWER_FIELDS = [("POST /xgboost/schedules", "concurrency_policy"),
                ("PATCH /xgboost/schedules/{schedule_id}", "concurrency_policy"),
                ("POST /xgboost/monitors", "max_sweeps_per_day"),
                ("PATCH /xgboost/monitors/{monitor_id}", "max_sweeps_per_day"),
                ("POST /xgboost/promote", "allow_schema_change")]


@pytest.fixture(scope="module")
def live(tmp_path_factory, mlflow_template, ray_session):
    root = tmp_path_factory.mktemp("schemathesis")
    settings = tiny_settings(root, mlflow_template).model_copy(update=SERVER_SETTINGS)
    with live_server(settings) as server:
        # a production model, as a running platform has one (predict before any promotion is a 503 by design)
        add_version(settings, Registry(settings), promote=True)
        wait_for(lambda: server.request("GET", "/xgboost/model_info")[1]["status"] == "success", 30)
        yield server, root


@pytest.mark.timeout(420)
def test_every_phase_and_check_passes_over_the_whole_document(live):
    server, root = live
    tally = fuzz(server.base_url, requests=1, max_examples=EXAMPLES, budget_s=BUDGET_S, passes=1)
    (root / "tally.txt").write_text(tally.summary())
    print(f"\n{tally.summary()}")
    assert tally.server_errors == 0, tally.summary()
    assert not tally.failed_checks, tally.summary()
    assert not tally.errors, tally.summary()

    status, document, _ = server.request("GET", "/openapi.json")
    documented = {f"{method.upper()} {path}" for path, item in document["paths"].items() for method in item}
    assert len(documented) >= 25, "the document lost operations"
    never = documented - set(tally.operations) - {"GET /openapi.json"}  # the engine reads it to start
    assert not never, f"operations never called: {sorted(never)}"
    assert PHASES <= set(tally.phases), tally.phases
    assert tally.requests >= 1000, tally.summary()
    assert 429 in tally.statuses, "the queue cap (3 jobs) was never reached"
    for operation, name in NEWER_FIELDS:
        assert name in tally.fields.get(operation, ()), f"{operation} was never sent {name}"


def test_unstated_rules_name_documented_operations_and_fields(live):
    """Each exemption from positive_data_acceptance names an operation of the document and fields it takes."""
    server, _ = live
    _, document, _ = server.request("GET", "/openapi.json")
    for (method, path), names in UNSTATED_RULES.items():
        operation = document["paths"][path][method.lower()]
        taken = {p["name"] for p in operation.get("parameters", [])} | {"body"}
        body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
        ref = body.get("$ref", "").rsplit("/", 1)[-1]
        taken |= set(document["components"]["schemas"].get(ref, {}).get("properties", {}))
        assert set(names) <= taken, f"{method} {path}: {set(names) - taken} not among its fields"
