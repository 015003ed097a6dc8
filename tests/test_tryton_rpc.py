"""The JSON-RPC client's wire format and error classification, against tiny local HTTP servers.

The servers stand in for trytond only to produce faults a healthy trytond will not
(503, 500, a hung socket, a gzip body labelled as plain JSON).
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from connectors.erp.base import ErpError, ErpUnavailable
from connectors.erp.tryton_rpc import TrytonRpc, TrytonUserError, dumps, loads

SECRET = "s3cret-password"


def test_typed_values_round_trip_in_trytons_format() -> None:
    values = {
        "amount": Decimal("12.50"),
        "day": dt.date(2026, 3, 2),
        "at": dt.datetime(2026, 3, 2, 9, 30, 5, 7),
        "duration": dt.timedelta(hours=-1.5),
        "count": np.int64(3),
    }
    wire = json.loads(dumps(values))
    assert wire["amount"] == {"__class__": "Decimal", "decimal": "12.50"}
    assert wire["day"] == {"__class__": "date", "year": 2026, "month": 3, "day": 2}
    assert wire["duration"] == {"__class__": "timedelta", "seconds": -5400.0}
    assert loads(dumps(values)) == {**values, "count": 3}


def test_gzip_is_detected_by_magic_bytes() -> None:
    body = json.dumps({"id": 1, "result": [{"__class__": "Decimal", "decimal": "1.10"}]}).encode()
    assert loads(gzip.compress(body)) == loads(body) == {"id": 1, "result": [Decimal("1.10")]}


class _Handler(BaseHTTPRequestHandler):
    status = 200
    body = b""

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def http_server(status: int, body: bytes = b"{}") -> Iterator[str]:
    handler = type("Handler", (_Handler,), {"status": status, "body": body})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
def test_server_side_trouble_is_unavailable(status: int) -> None:
    with http_server(status) as url:
        with pytest.raises(ErpUnavailable, match=f"HTTP {status}"):
            TrytonRpc(url, "db", "admin", SECRET).login()


def test_a_bad_request_is_an_error_not_unavailability() -> None:
    with http_server(400) as url:
        with pytest.raises(ErpError) as info:
            TrytonRpc(url, "db", "admin", SECRET).login()
    assert not isinstance(info.value, ErpUnavailable)


def test_a_refused_login_never_shows_the_password() -> None:
    with http_server(200, b'{"id": 1, "result": false}') as url:
        with pytest.raises(ErpError) as info:
            TrytonRpc(url, "db", "admin", SECRET).login()
    assert SECRET not in str(info.value) and SECRET not in repr(info.value)


def test_a_user_error_carries_trytons_message() -> None:
    answer = {"id": 1, "error": ["UserError", ["The external ID must be unique.", "", None]]}
    with http_server(200, gzip.compress(json.dumps(answer).encode())) as url:
        with pytest.raises(TrytonUserError) as info:
            TrytonRpc(url, "db", "admin", SECRET).login()
    assert info.value.message == "The external ID must be unique."


def test_a_hung_server_times_out_as_unavailable() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        started = time.perf_counter()
        with pytest.raises(ErpUnavailable) as info:
            TrytonRpc(url, "db", "admin", SECRET, timeout=0.3).login()
    assert time.perf_counter() - started < 2
    assert SECRET not in str(info.value)


def test_nothing_listening_is_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ErpUnavailable, match="unreachable"):
        TrytonRpc(f"http://127.0.0.1:{port}", "db", "admin", SECRET).login()


class _KeepAliveHandler(BaseHTTPRequestHandler):
    """Answers login, preferences and any model call; records each request's client port."""

    protocol_version = "HTTP/1.1"  # as trytond's threaded werkzeug server: keep-alive
    ports: list[int]

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        self.ports.append(self.client_address[1])
        if request["method"] == "common.db.login":
            result: object = [1, "session-key"]
        elif request["method"] == "model.res.user.get_preferences":
            result = {"language": "en"}
        else:
            result = len(self.ports)
        body = json.dumps({"id": request["id"], "result": result}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_calls_share_one_kept_alive_connection() -> None:
    """A window makes hundreds of calls: one TCP connection for all, not one per call."""
    ports: list[int] = []
    handler = type("Handler", (_KeepAliveHandler,), {"ports": ports})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        rpc = TrytonRpc(f"http://127.0.0.1:{server.server_address[1]}", "db", "admin", SECRET)
        answers = [rpc.model("party.party", "search_count", []) for _ in range(5)]
        rpc.close()
    finally:
        server.shutdown()
        server.server_close()
    assert answers == [3, 4, 5, 6, 7]  # login and preferences came first
    assert len(ports) == 7 and len(set(ports)) == 1, ports
