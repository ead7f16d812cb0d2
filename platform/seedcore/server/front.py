"""The API's HTTP front: each request is read whole in an asyncio event loop, then the Flask app runs in a thread.

gunicorn's asyncio worker (`gunicorn.workers.gasgi`) parses HTTP; `Front` (an ASGI app) reads the body up to
its cap and within `read_body_timeout_s`, and only then hands the request, body and all, to the WSGI app in a
thread pool. A client sending its headers or body slowly costs a socket and a few bytes, never a thread, so
`/health` and predict stay answered. Headers get `read_header_timeout_s` (FrontProtocol), counted from the
connection's start or its previous answer; a late request is a 408 (an idle connection is just closed).
A body over its cap is a 413 as soon as its Content-Length says so, or as soon as a chunked body passes it.
A client that leaves before its answer is logged as 499 (nginx's "client closed request"), not as the 500
gunicorn would log for an answer it never sent.
"""

from __future__ import annotations

import asyncio
import json
import os
from concurrent.futures import ThreadPoolExecutor
from io import BytesIO

from a2wsgi.wsgi import build_environ
from gunicorn.asgi.protocol import ASGIProtocol
from gunicorn.workers.gasgi import ASGIWorker
from werkzeug.exceptions import HTTPException

from seedcore.errors import PayloadTooLargeError, RequestTimeoutError, SeedcoreError
from seedcore.services import services_of

LINGER_S = 2.0  # after refusing a body, read (and drop) what the client still sends, so it sees the answer
CONNECTION = "seedcore.connection"  # scope["extensions"]: the FrontProtocol a request came on
CLIENT_CLOSED = 499  # the access log's status for a request whose client left before any answer went out
_JSON = [(b"content-type", b"application/json")]


class _TooLarge(Exception):
    """A body past its cap: the 413 to answer, and whether the client is still sending (`more`: drop what
    follows for a moment) or its body has ended (reading again would wait for the client to disconnect)."""

    def __init__(self, error: PayloadTooLargeError, more: bool):
        super().__init__(error.message)
        self.error, self.more = error, more


class Front:
    """ASGI app over a Flask (WSGI) app: whole, capped bodies in; the app in `threads` threads."""

    def __init__(self, app, threads: int):
        # the app's own guard decides the caps (imported here: gunicorn's arbiter, which imports this module
        # for the worker class, never loads the app and its libraries)
        from seedcore.api._guard import body_cap, too_large

        self._body_cap, self._too_large = body_cap, too_large
        self.app = app
        self.settings = services_of(app).settings
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="seedcore-request")
        self._routes = app.url_map.bind("front")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":  # no websockets here; lifespan is off
            return
        headers = dict(scope["headers"])  # singletons (Content-Length, Transfer-Encoding): the parser refuses repeats
        limit, variable = self._body_cap(self.settings, self._endpoint(scope))
        declared = int(headers.get(b"content-length", b"0") or 0)
        chunked = b"chunked" in headers.get(b"transfer-encoding", b"").lower()
        waits = headers.get(b"expect", b"").lower() == b"100-continue"
        if declared > limit:  # refused from the headers alone: not one byte of the body is kept
            await self._refuse(send, receive, self._too_large(limit, variable), linger=not waits)
            return
        body = b""
        if declared or chunked:
            if waits:
                await send({"type": "http.response.informational", "status": 100, "headers": []})
            try:
                body = await self._read(receive, limit, variable)
            except _TooLarge as refused:
                await self._refuse(send, receive, refused.error, linger=refused.more)
                return
            except SeedcoreError as exc:  # the body came too late: the connection closes
                await self._refuse(send, receive, exc, linger=False)
                return
            if body is None:  # the client went away
                return
        connection = scope.get("extensions", {}).get(CONNECTION)
        if connection is not None:
            connection.answering = True  # from here on a stop lets it finish
        status, response_headers, content = await asyncio.get_running_loop().run_in_executor(
            self.pool, self._run, scope, body)
        await send({"type": "http.response.start", "status": status, "headers": response_headers})
        await send({"type": "http.response.body", "body": content})

    def _endpoint(self, scope) -> str | None:
        try:
            endpoint, _ = self._routes.match(scope["path"], scope["method"])
        except HTTPException:  # RequestRedirect is one
            return None
        return endpoint

    async def _read(self, receive, limit: int, variable: str) -> bytes | None:
        """The whole body, or None if the client left; a 413 past `limit`, a 408 past the deadline."""
        loop = asyncio.get_running_loop()
        timeout = self.settings.read_body_timeout_s
        deadline = loop.time() + timeout
        parts, size = [], 0
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                raise RequestTimeoutError(f"the request body did not arrive within {timeout:g} s "
                                          "(SEEDCORE_READ_BODY_TIMEOUT_S)", field="body") from None
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _TooLarge(self._too_large(limit, variable), more=message.get("more_body", False))
            parts.append(chunk)
            if not message.get("more_body", False):
                return b"".join(parts)

    async def _refuse(self, send, receive, error: SeedcoreError, linger: bool) -> None:
        """Answer `error` as our JSON; then, for a body we will not read, drop what still arrives for a
        moment (a client that is still sending would otherwise get a reset instead of the answer)."""
        content = json.dumps(error.to_dict()).encode()
        closing = [(b"connection", b"close")] if error.status_code == 408 else []
        await send({"type": "http.response.start", "status": error.status_code,
                    "headers": [*_JSON, (b"content-length", str(len(content)).encode()), *closing]})
        await send({"type": "http.response.body", "body": content})
        if not linger:
            return
        try:
            async with asyncio.timeout(LINGER_S):
                while (message := await receive())["type"] != "http.disconnect" and message.get("more_body"):
                    pass
        except TimeoutError:
            pass  # the connection closes with the rest unread

    def _run(self, scope, body: bytes) -> tuple[int, list, bytes]:
        """In a pool thread: the WSGI app over the whole body; its status, headers and content."""
        environ = build_environ(scope, BytesIO(body))
        environ["CONTENT_LENGTH"] = str(len(body))  # a chunked body arrives whole, with its length
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        environ["wsgi.input_terminated"] = True
        started = {}

        def start_response(status, response_headers, exc_info=None):
            started["status"], started["headers"] = status, response_headers
            return chunks.append

        chunks: list[bytes] = []
        result = self.app(environ, start_response)
        try:
            chunks.extend(result)
        finally:
            getattr(result, "close", lambda: None)()
        headers = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in started["headers"]]
        return int(started["status"].split(" ", 1)[0]), headers, b"".join(chunks)


class _ConnectionLog:
    """The worker's log as one connection uses it: a request whose client left before any answer went out is
    logged as CLIENT_CLOSED (the app's answer is dropped then, and gunicorn would log a 500 it never sent)."""

    def __init__(self, log, connection: FrontProtocol):
        self._log, self._connection = log, connection

    def __getattr__(self, name):
        return getattr(self._log, name)

    def access(self, resp, req, environ, request_time):
        if self._connection.left is req and not resp.headers:
            resp.status = CLIENT_CLOSED
        self._log.access(resp, req, environ, request_time)


class FrontProtocol(ASGIProtocol):
    """gunicorn's HTTP/1.1 protocol with a deadline on each request's headers (none of its own)."""

    def __init__(self, worker):
        super().__init__(worker)
        self._header_timeout = worker.asgi.settings.read_header_timeout_s
        self._late = None
        self._partial = False
        self.answering = False  # the app has the current request (set by Front)
        self.left = None  # the request that was under way when the client went away
        self.log = _ConnectionLog(worker.log, self)

    def connection_made(self, transport):
        super().connection_made(transport)
        self.worker.connections.add(self)
        self._await_headers()

    def connection_lost(self, exc):
        self._stop_waiting()
        self.left = self._current_request
        self.worker.connections.discard(self)
        super().connection_lost(exc)

    def data_received(self, data):
        if self._current_request is None:
            self._partial = True  # part of a request head: a late one is answered 408
        super().data_received(data)

    def _on_headers_complete(self):
        self._stop_waiting()
        return super()._on_headers_complete()

    def _build_http_scope(self, request, sockname, peername):
        scope = super()._build_http_scope(request, sockname, peername)
        scope.setdefault("extensions", {})[CONNECTION] = self
        return scope

    def _arm_keepalive_timer(self):  # called when an answer is out and the connection waits for the next request
        super()._arm_keepalive_timer()
        self.answering = False
        self._await_headers()

    def _await_headers(self):
        self._stop_waiting()
        self._partial = False
        self._late = self.worker.loop.call_later(self._header_timeout, self._headers_late)

    def _stop_waiting(self):
        if self._late is not None:
            self._late.cancel()
            self._late = None

    def _headers_late(self):
        self._late = None
        if self._current_request is not None or self._closed:
            return
        if self._partial:
            content = json.dumps(RequestTimeoutError(
                f"the request headers did not arrive within {self._header_timeout:g} s "
                "(SEEDCORE_READ_HEADER_TIMEOUT_S)").to_dict()).encode()
            self._safe_write(b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(content), content))
        self._close_transport()

    def close_if_idle(self) -> None:
        """On shutdown: end a connection that waits for a request or is still sending one; a request the
        app is answering finishes first."""
        if not self.answering:
            self._stop_waiting()
            self._close_transport()


class FrontWorker(ASGIWorker):
    """gunicorn's asyncio worker serving `Front` through `FrontProtocol`. On SIGTERM it stops accepting,
    closes idle connections and lets requests being answered finish (up to the graceful timeout); on
    SIGINT/SIGQUIT it stops at once. `on_terminate()` runs when SIGTERM arrives."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.connections: set[FrontProtocol] = set()
        self._stop = None

    def on_terminate(self) -> None:
        """SIGTERM arrived (subclasses start stopping the app here); must return at once."""

    def handle_exit_signal(self):
        super().handle_exit_signal()
        self._wake()
        self.on_terminate()

    def handle_quit_signal(self):
        super().handle_quit_signal()
        self._wake()

    def _wake(self):
        if self._stop is not None:
            self._stop.set()

    async def _serve(self):
        self._stop = asyncio.Event()
        servers = [await self.loop.create_server(lambda: FrontProtocol(self), sock=listener.sock,
                                                 start_serving=True) for listener in self.sockets]
        while self.alive and self.ppid == os.getppid():
            self.notify()
            try:
                await asyncio.wait_for(self._stop.wait(), 1.0)
            except TimeoutError:
                pass
        for server in servers:
            server.close()
        for connection in list(self.connections):
            connection.close_if_idle()
        deadline = self.loop.time() + self.cfg.graceful_timeout
        while self.connections and not self._quick_shutdown and self.loop.time() < deadline:
            self.notify()
            await asyncio.sleep(0.1)
