"""Hot swap under load: concurrent predict requests over real HTTP while the production alias moves
back and forth; every answer is exactly one version's answer and none fails."""

from __future__ import annotations

import threading

import pytest
import requests

from _serving import add_version, holdout_rows, live_server, serve_app, stop_app, wait_for
from seedcore.promotion.production import Production
from seedcore.promotion.registry import Registry

pytestmark = pytest.mark.integration

MOVES = 10
CLIENTS = 6


def _client_loop(url: str, rows: list, single: bool, stop: threading.Event, results: list, errors: list):
    session = requests.Session()
    payload = {"features": rows[0]} if single else {"instances": rows}
    while not stop.is_set():
        try:
            response = session.post(f"{url}/xgboost/predict", json=payload, timeout=60)
        except requests.RequestException as exc:
            errors.append(repr(exc))
            continue
        if response.status_code != 200:
            errors.append((response.status_code, response.text))
        else:
            results.append((single, response.json()))


def test_predictions_stay_exact_while_the_alias_moves_back_and_forth(settings):
    registry = Registry(settings)
    v1, b1 = add_version(settings, registry, seed=1, depth=2)
    v2, b2 = add_version(settings, registry, seed=2, depth=4, rounds=8)
    x = holdout_rows(settings, 16)
    rows = x.tolist()
    want = {v1: b1.inplace_predict(x).tolist(), v2: b2.inplace_predict(x).tolist()}
    assert want[v1] != want[v2] and want[v1][0] != want[v2][0]

    app = serve_app(settings)
    stop, results, errors = threading.Event(), [], []
    try:
        with live_server(app) as url:
            clients = [threading.Thread(target=_client_loop, args=(url, rows, i % 2 == 0, stop, results, errors))
                       for i in range(CLIENTS)]
            for thread in clients:
                thread.start()
            control = requests.Session()
            served = lambda: control.get(f"{url}/xgboost/model_info").json()["version"]  # noqa: E731
            for move in range(MOVES):
                target = v1 if move % 2 == 0 else v2
                Production(registry).promote(target, force=True)
                if move % 2 == 0:  # half the moves by refresh_model, half left to the poll thread
                    assert control.post(f"{url}/xgboost/refresh_model").json()["model_version"] == target
                wait_for(lambda: served() == target, timeout=20)
                before = len(results)
                wait_for(lambda: len(results) >= before + CLIENTS, timeout=20)  # traffic on each version
            stop.set()
            for thread in clients:
                thread.join(timeout=60)
    finally:
        stop.set()
        stop_app(app)

    assert errors == []
    assert len(results) >= MOVES * CLIENTS
    seen = set()
    for single, body in results:
        version = body["model_version"]
        seen.add(version)
        if single:
            assert body["prediction"] == want[version][0]
        else:
            assert body["predictions"] == want[version]  # never a mix of two versions inside one answer
    assert seen == {v1, v2}
