"""`Front`, the ASGI app before the Flask app, driven in process with asyncio: it reads each body whole (up to
the endpoint's cap, within SEEDCORE_READ_BODY_TIMEOUT_S) in the event loop and only then runs the app in a
pool thread. A body over its cap is a 413 from its Content-Length or as soon as a chunked body passes it, a
late one a 408; neither reaches the app, and a request still waiting for its body holds no thread.
(tests/server/test_front.py runs the same front under gunicorn, through real sockets.)"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from types import SimpleNamespace

import pytest
from flask import request, request_started

from seedcore.api import create_app
from seedcore.server.front import CONNECTION, LINGER_S, Front
from seedcore.services import services_of

pytestmark = pytest.mark.unit

REQUEST_CAP, PREDICT_CAP = 4096, 1024  # SEEDCORE_MAX_REQUEST_BYTES, SEEDCORE_MAX_PREDICT_BYTES
BODY_TIMEOUT_S = 0.3
POOL_THREAD = "seedcore-request"  # Front's pool threads are named so
# refused by the view (after the guard decoded the body whole): a 400 naming the field in the body's last part
BAD_INCIDENT = b'{"event_type": "model_promoted", "outcome": "success", "salience": "high"}'
JSON_TYPE = (b"content-type", b"application/json")
CHUNKED = (b"transfer-encoding", b"chunked")


@pytest.fixture(scope="module")
def app(module_settings):
    """The real app on small caps and a short body deadline, with no background thread."""
    application = create_app(module_settings.replace(max_request_bytes=REQUEST_CAP, max_predict_bytes=PREDICT_CAP,
                                                     read_body_timeout_s=BODY_TIMEOUT_S), background=False)
    application.config["TESTING"] = True
    yield application
    services_of(application).stop()


@pytest.fixture(scope="module")
def front(app):
    server = Front(app, threads=2)
    yield server
    server.pool.shutdown(wait=True)


@pytest.fixture
def seen(app):
    """What each request that reached the app looked like there (Flask's `request_started` signal)."""
    requests = []

    def started(sender, **_):
        requests.append(SimpleNamespace(path=request.path, thread=threading.current_thread().name,
                                        content_length=request.content_length,
                                        transfer_encoding=request.headers.get("Transfer-Encoding")))

    request_started.connect(started, app)
    yield requests
    request_started.disconnect(started, app)


class Client:
    """One request's ASGI side: the messages it sends, then what it does once they are out (`then`: "end"
    fails the test if read again, "stall" never sends more, "leave" disconnects, "trickle" sends a byte
    of body every 50 ms forever). An asyncio.Event among the messages holds the rest back until it is set.
    `log` keeps the order of reads and answers."""

    def __init__(self, messages=(), then: str = "end"):
        self.messages, self.then = list(messages), then
        self.log: list[str] = []
        self.sent: list[dict] = []
        self.connection, self.seconds = None, 0.0  # set by ask()

    async def receive(self) -> dict:
        self.log.append("receive")
        while self.messages and isinstance(self.messages[0], asyncio.Event):
            await self.messages.pop(0).wait()
        if self.messages:
            return self.messages.pop(0)
        if self.then == "stall":
            await asyncio.get_running_loop().create_future()
        if self.then == "leave":
            return {"type": "http.disconnect"}
        if self.then == "trickle":
            await asyncio.sleep(0.05)
            return {"type": "http.request", "body": b" ", "more_body": True}
        raise AssertionError("the front read past the end of the request")

    async def send(self, message: dict) -> None:
        self.log.append(message["type"])
        self.sent.append(message)

    @property
    def reads(self) -> int:
        return self.log.count("receive")

    @property
    def start(self) -> dict:
        (start,) = [m for m in self.sent if m["type"] == "http.response.start"]
        return start

    @property
    def status(self) -> int:
        return self.start["status"]

    @property
    def headers(self) -> dict[bytes, bytes]:
        return dict(self.start["headers"])

    @property
    def json(self) -> dict:
        (body,) = [m["body"] for m in self.sent if m["type"] == "http.response.body"]
        assert int(self.headers[b"content-length"]) == len(body)
        return json.loads(body)


def parts(*chunks: bytes) -> list[dict]:
    """`http.request` messages carrying `chunks`, the last one ending the body."""
    return [{"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1} for i, chunk in enumerate(chunks)]


def unfinished(*chunks: bytes) -> list[dict]:
    """`http.request` messages carrying `chunks`, with more of the body still to come."""
    return [{"type": "http.request", "body": chunk, "more_body": True} for chunk in chunks]


def split(body: bytes, pieces: int) -> list[bytes]:
    size = -(-len(body) // pieces)
    return [body[i:i + size] for i in range(0, len(body), size)]


def scope(method: str, path: str, headers=(), connection=None, kind: str = "http") -> dict:
    """An HTTP/1.1 request as gunicorn's protocol hands it over (Host localhost, as Flask's test client sends)."""
    return {"type": kind, "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
            "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
            "headers": [(b"host", b"localhost"), *headers], "server": ("127.0.0.1", 80),
            "client": ("127.0.0.1", 40000), "extensions": {CONNECTION: connection or SimpleNamespace(answering=False)}}


def sized(length: int) -> list[tuple[bytes, bytes]]:
    return [JSON_TYPE, (b"content-length", str(length).encode())]


def ask(front: Front, method: str, path: str, headers=(), messages=(), then: str = "end") -> Client:
    """Run one request through `front`; the client, with the connection and the seconds it took."""
    client = Client(messages, then)
    request_scope = scope(method, path, headers)
    started = time.monotonic()
    asyncio.run(front(request_scope, client.receive, client.send))
    client.seconds = time.monotonic() - started
    client.connection = request_scope["extensions"][CONNECTION]
    return client


def assert_refused_unrun(client: Client, status: int, seen: list) -> dict:
    """`status` as our JSON error naming the body; the app never saw the request."""
    assert client.status == status, client.sent
    assert client.headers[b"content-type"] == b"application/json"
    body = client.json
    assert body["status"] == "error" and body["field"] == "body", body
    assert seen == [] and client.connection.answering is False, seen
    return body


def test_a_get_through_the_front_is_answered_as_flask_answers_it_in_a_pool_thread(front, app, seen):
    through = ask(front, "GET", "/health")
    assert [(s.path, s.thread.startswith(POOL_THREAD)) for s in seen] == [("/health", True)]
    assert through.connection.answering is True  # a stop now lets the answer finish
    direct = app.test_client().get("/health")
    assert through.status == direct.status_code == 200
    assert through.headers[b"content-type"] == direct.headers["Content-Type"].encode()
    assert set(through.json) == set(direct.get_json())
    assert through.json["database"] == direct.get_json()["database"]
    assert through.reads == 0  # no body announced: none read


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_body_sent_in_several_messages_reaches_the_app_whole(front, app, seen, framing):
    """The field at fault is in the last message: the app's answer is the test client's for the whole body;
    a chunked body reaches the app with its length, as if it had had one."""
    headers = sized(len(BAD_INCIDENT)) if framing == "content-length" else [JSON_TYPE, CHUNKED]
    through = ask(front, "POST", "/mfb/incidents", headers, parts(*split(BAD_INCIDENT, 3)))
    assert [(s.content_length, s.transfer_encoding) for s in seen] == [(len(BAD_INCIDENT), None)]
    assert seen[0].thread.startswith(POOL_THREAD)
    direct = app.test_client().post("/mfb/incidents", data=BAD_INCIDENT, content_type="application/json")
    assert (through.status, through.json) == (direct.status_code, direct.get_json())
    assert through.json["field"] == "salience", through.json  # so the last part arrived too
    assert through.reads == 3
    assert app.test_client().get("/mfb/incidents").get_json()["total"] == 0  # refused: nothing recorded


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_body_of_exactly_the_cap_is_taken_and_one_byte_more_is_a_413(front, seen, framing):
    at_cap = b'{"event_type": 5}'.ljust(REQUEST_CAP)  # trailing blanks: still the same JSON object
    for body, reaches in ((at_cap, True), (at_cap + b" ", False)):
        seen.clear()
        if framing == "content-length":
            client = ask(front, "POST", "/mfb/incidents", sized(len(body)), parts(*split(body, 4)))
        else:  # the terminating zero-length chunk on its own, after the body
            client = ask(front, "POST", "/mfb/incidents", [JSON_TYPE, CHUNKED], parts(*split(body, 4), b""))
        if reaches:
            assert (client.status, client.json["field"]) == (400, "event_type"), client.json
            assert [s.content_length for s in seen] == [REQUEST_CAP]
        else:
            body = assert_refused_unrun(client, 413, seen)
            assert f"the {REQUEST_CAP}-byte cap (SEEDCORE_MAX_REQUEST_BYTES)" in body["error"], body


@pytest.mark.parametrize(("path", "cap", "variable"), [
    ("/xgboost/predict", PREDICT_CAP, "SEEDCORE_MAX_PREDICT_BYTES"),
    ("/xgboost/feedback", PREDICT_CAP, "SEEDCORE_MAX_PREDICT_BYTES"),
    ("/mfb/incidents", REQUEST_CAP, "SEEDCORE_MAX_REQUEST_BYTES"),
    ("/no/such/endpoint", REQUEST_CAP, "SEEDCORE_MAX_REQUEST_BYTES"),  # no route: the general cap
    ("/health", REQUEST_CAP, "SEEDCORE_MAX_REQUEST_BYTES"),  # a route, not for POST: the general cap
], ids=["predict", "feedback", "incidents", "unknown-path", "wrong-method"])
def test_a_content_length_over_the_endpoints_cap_is_a_413_before_the_body_is_read(front, seen, path, cap,
                                                                                   variable):
    """Refused from the headers: answered before the first read; what the client sends anyway is read and
    dropped up to its end (so it sees the answer), and the app never runs."""
    body = b"{" + b" " * cap + b"}"
    client = ask(front, "POST", path, sized(len(body)), parts(*split(body, 2)))
    answer = assert_refused_unrun(client, 413, seen)
    assert answer["error"] == f"request body is larger than the {cap}-byte cap ({variable})", answer
    assert b"connection" not in client.headers  # the connection stays usable
    assert client.log == ["http.response.start", "http.response.body", "receive", "receive"]


def test_the_prediction_cap_applies_to_prediction_endpoints_only(front, app, seen):
    """A body between the two caps: refused on predict, taken elsewhere, and taken on a predict path that
    only redirects (Flask answers the redirect; the re-sent request meets the cap)."""
    body = b'{"event_type": 5}'.ljust(PREDICT_CAP * 2)
    refused = ask(front, "POST", "/xgboost/predict", sized(len(body)), parts(body))
    assert "SEEDCORE_MAX_PREDICT_BYTES" in assert_refused_unrun(refused, 413, seen)["error"]
    taken = ask(front, "POST", "/mfb/incidents", sized(len(body)), parts(body))
    assert (taken.status, taken.json["field"]) == (400, "event_type"), taken.json
    redirected = ask(front, "POST", "/xgboost//predict", sized(len(body)), parts(body))
    assert [s.path for s in seen] == ["/mfb/incidents", "/xgboost//predict"]
    direct = app.test_client().post("/xgboost//predict", data=body, content_type="application/json")
    assert redirected.status == direct.status_code == 308
    assert redirected.headers[b"location"] == direct.headers["Location"].encode()


def test_a_chunked_body_is_a_413_as_soon_as_it_passes_the_cap(front, seen):
    chunk = b" " * 300  # the 4th passes the 1024-byte predict cap; 10 are sent
    client = ask(front, "POST", "/xgboost/predict", [JSON_TYPE, CHUNKED], parts(*[chunk] * 10))
    answer = assert_refused_unrun(client, 413, seen)
    assert f"the {PREDICT_CAP}-byte cap (SEEDCORE_MAX_PREDICT_BYTES)" in answer["error"], answer
    answered = client.log.index("http.response.start")
    assert client.log[:answered].count("receive") == 4  # not one chunk more before the answer
    assert client.reads == 10  # then the rest read and dropped, up to the body's end


def test_a_chunked_body_that_passes_the_cap_in_its_last_message_is_not_read_past_its_end(front, seen):
    client = ask(front, "POST", "/xgboost/predict", [JSON_TYPE, CHUNKED], parts(b" " * 600, b" " * 600))
    assert_refused_unrun(client, 413, seen)
    assert client.reads == 2  # a third read fails the test ("end"): there is nothing left to drop


@pytest.mark.parametrize("sent", [(), (b'{"event_type": ',)], ids=["nothing", "part"])
def test_a_body_that_does_not_arrive_in_time_is_a_408_that_closes_the_connection(front, seen, sent):
    client = ask(front, "POST", "/mfb/incidents", sized(500), unfinished(*sent), then="stall")
    answer = assert_refused_unrun(client, 408, seen)
    assert "within 0.3 s (SEEDCORE_READ_BODY_TIMEOUT_S)" in answer["error"], answer
    assert client.headers[b"connection"] == b"close"
    assert BODY_TIMEOUT_S <= client.seconds < BODY_TIMEOUT_S + LINGER_S / 2  # no lingering on a late body
    assert client.reads == len(sent) + 1


def test_expect_100_continue_invites_a_body_within_the_cap(front, app, seen):
    headers = [*sized(len(BAD_INCIDENT)), (b"expect", b"100-continue")]
    whole = {"type": "http.request", "body": BAD_INCIDENT}  # no more_body: False, as ASGI has it by default
    client = ask(front, "POST", "/mfb/incidents", headers, [whole])
    assert client.sent[0] == {"type": "http.response.informational", "status": 100, "headers": []}
    assert client.log[:2] == ["http.response.informational", "receive"]  # invited, then read
    assert [s.content_length for s in seen] == [len(BAD_INCIDENT)]
    direct = app.test_client().post("/mfb/incidents", data=BAD_INCIDENT, content_type="application/json")
    assert (client.status, client.json) == (direct.status_code, direct.get_json())


def test_expect_100_continue_over_the_cap_is_refused_without_inviting_or_reading(front, seen):
    headers = [*sized(PREDICT_CAP + 1), (b"expect", b"100-continue")]
    client = ask(front, "POST", "/xgboost/predict", headers)  # a read would fail the test ("end")
    assert_refused_unrun(client, 413, seen)
    assert client.log == ["http.response.start", "http.response.body"]


def test_a_client_that_leaves_mid_body_gets_no_answer_and_the_app_does_not_run(front, seen):
    client = ask(front, "POST", "/mfb/incidents", sized(len(BAD_INCIDENT)), unfinished(BAD_INCIDENT[:10]),
                 then="leave")
    assert client.sent == [] and seen == [] and client.connection.answering is False
    assert client.reads == 2


def test_a_refused_client_that_leaves_is_not_waited_for(front, seen):
    client = ask(front, "POST", "/xgboost/predict", sized(PREDICT_CAP * 4), unfinished(b"{"), then="leave")
    assert_refused_unrun(client, 413, seen)
    assert client.reads == 2 and client.seconds < LINGER_S / 2


def test_a_refused_client_that_keeps_sending_is_read_for_the_linger_time_only(front, seen):
    client = ask(front, "POST", "/xgboost/predict", sized(10**9), then="trickle")
    assert_refused_unrun(client, 413, seen)
    assert client.log[:2] == ["http.response.start", "http.response.body"]  # the answer first
    assert client.reads > 5  # then its bytes were read and dropped, for LINGER_S
    assert LINGER_S <= client.seconds < LINGER_S + 1.5


def test_requests_waiting_for_their_bodies_hold_no_thread(module_settings):
    """Five requests (the front has two threads) stalled mid-body: /health is answered meanwhile, none of them
    has reached the app; once their bodies end, all five are answered."""
    patient = create_app(module_settings.replace(read_body_timeout_s=60), background=False)
    seen = []

    def started(sender, **_):
        seen.append(request.path)

    request_started.connect(started, patient)
    server = Front(patient, threads=2)

    async def run():
        release = asyncio.Event()
        halves = split(BAD_INCIDENT, 2)
        slow = [Client([*unfinished(halves[0]), release, *parts(halves[1])]) for _ in range(5)]
        tasks = [asyncio.create_task(server(scope("POST", "/mfb/incidents", sized(len(BAD_INCIDENT))),
                                            client.receive, client.send)) for client in slow]
        await asyncio.sleep(0.1)
        health = Client()
        await asyncio.wait_for(server(scope("GET", "/health"), health.receive, health.send), 10)
        waiting = [task.done() for task in tasks]
        reached = list(seen)
        release.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
        return health, waiting, reached, slow

    try:
        health, waiting, reached, slow = asyncio.run(run())
    finally:
        request_started.disconnect(started, patient)
        server.pool.shutdown(wait=True)
        services_of(patient).stop()
    assert health.status == 200 and reached == ["/health"] and waiting == [False] * 5
    assert [(client.status, client.json["field"]) for client in slow] == [(400, "salience")] * 5


def test_a_request_from_a_server_without_our_connection_extension_is_answered(front, seen):
    request_scope = scope("GET", "/health")
    del request_scope["extensions"]  # optional in ASGI; only FrontProtocol adds ours
    client = Client()
    asyncio.run(front(request_scope, client.receive, client.send))
    assert client.status == 200 and [s.path for s in seen] == ["/health"]


@pytest.mark.parametrize("kind", ["lifespan", "websocket"])
def test_scopes_other_than_http_are_ignored(front, seen, kind):
    client = Client()
    asyncio.run(front(scope("GET", "/health", kind=kind), client.receive, client.send))
    assert client.log == [] and seen == []
