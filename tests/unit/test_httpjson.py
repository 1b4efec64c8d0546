"""``scotd.httpjson.http_json`` against a stdlib server on 127.0.0.1: statuses returned, not raised;
exactly the headers the caller gave; failed exchanges are ``OSError``."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from scotd.httpjson import http_json


class _Echo(BaseHTTPRequestHandler):
    """Answers with what it got; ``/text`` answers plain text, ``/cut`` a body shorter than declared,
    ``/early`` a 413 without reading the body."""

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if self.path == "/early":
            self.send_response(413)
            self.send_header("Content-Length", "2")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"{}")
            return
        got = self.rfile.read(length)
        if self.path == "/cut":
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.write(b"short")
            return
        if self.path == "/text":
            payload, kind = b"not json \xff", "text/plain"
        else:
            seen = {k.lower(): v for k, v in self.headers.items()}
            echo = {"method": self.command, "path": self.path, "headers": seen, "body": got.decode("latin-1")}
            payload, kind = json.dumps(echo).encode(), "application/json"
        self.send_response(404 if self.path.startswith("/missing") else 200)
        self.send_header("Content-Type", kind)
        self.send_header("X-Twice", "1")
        self.send_header("X-Twice", "2")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_DELETE = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def echo() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def test_json_body_statuses_and_headers(echo: str) -> None:
    reply = http_json("POST", f"{echo}/missing?x=1", {"a": [1, "é"]}, headers={"Authorization": "Bearer t"})
    assert reply.status == 404  # returned, not raised
    assert reply.body["method"] == "POST" and reply.body["path"] == "/missing?x=1"
    assert json.loads(reply.body["body"].encode("latin-1")) == {"a": [1, "é"]}
    sent = reply.body["headers"]
    assert sent["content-type"] == "application/json" and sent["authorization"] == "Bearer t"
    assert reply.headers["content-type"] == "application/json" and reply.headers["x-twice"] == "1, 2"
    assert json.loads(reply.text) == reply.body


def test_raw_data_goes_out_as_given(echo: str) -> None:
    sent = http_json("POST", f"{echo}/x", data=b"\xff\xfe", headers={"Authorization": b"Bearer \xff"}).body
    assert sent["body"] == "\xff\xfe" and "content-type" not in sent["headers"]
    assert sent["headers"]["authorization"] == "Bearer \xff" and sent["headers"]["content-length"] == "2"
    empty = http_json("POST", f"{echo}/x", data=b"").body
    assert empty["headers"]["content-length"] == "0" and "content-type" not in empty["headers"]
    assert http_json("DELETE", echo).body["path"] == "/"


def test_text_replies_and_failed_exchanges(echo: str) -> None:
    text = http_json("GET", f"{echo}/text")
    assert text.status == 200 and text.body == text.text == "not json \ufffd"
    with pytest.raises(OSError):
        http_json("GET", f"{echo}/cut", timeout=5)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]  # bound, not listening: refused
        with pytest.raises(OSError):
            http_json("GET", f"http://127.0.0.1:{closed}/", timeout=5)
    with pytest.raises(ValueError):
        http_json("GET", "ftp://127.0.0.1/")
    with pytest.raises(ValueError):
        http_json("POST", echo, {"a": 1}, data=b"x")


def test_an_early_answer_to_an_unread_body_is_the_reply(echo: str) -> None:
    reply = http_json("POST", f"{echo}/early", data=b"x" * (64 << 20), timeout=10)
    assert (reply.status, reply.body) == (413, {})
