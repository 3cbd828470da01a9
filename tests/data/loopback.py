"""A loopback HTTP server for download tests: serves fixture bytes and misbehaves on purpose, per path.

Each path has a `Rule`: answer an error status the first N times, cut the body short (Content-Length
larger than what is sent), stall past the client's socket timeout, add latency, or trickle the body
slowly. The server counts requests and bytes per path, and records Range starts, so tests can prove
that nothing complete was fetched twice and that a killed transfer resumed.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)

_RANGE = re.compile(r"bytes=(\d+)-(\d*)")


@dataclass
class Rule:
    fail_status: int | None = None  # answer this status ...
    fail_times: int = 0  # ... on the first N requests (-1: always)
    truncate_times: int = 0  # first N bodies stop halfway although Content-Length promised all
    stall_times: int = 0  # first N requests sleep `stall_s` before answering
    stall_s: float = 0.0
    latency_s: float = 0.0  # every request waits this long first (emulates the network)
    bytes_per_s: float | None = None  # trickle the body at this rate (kill tests)
    retry_after: str | None = None  # a Retry-After header on the error answers (seconds or an HTTP date)


@dataclass
class Resource:
    body: bytes
    content_type: str
    rule: Rule = field(default_factory=Rule)


class LoopbackServer:
    """``with LoopbackServer() as srv: srv.add("/v.mp4", data); url = srv.url("/v.mp4")``."""

    def __init__(self) -> None:
        self.resources: dict[str, Resource] = {}
        self.hits: dict[str, int] = {}
        self.sent: dict[str, int] = {}
        self.range_starts: dict[str, list[int]] = {}
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def add(self, path: str, body: bytes, content_type: str = "application/octet-stream",
            rule: Rule | None = None) -> str:
        self.resources[path] = Resource(body, content_type, rule or Rule())
        return self.url(path)

    def count(self, path: str) -> tuple[int, Rule | None]:
        """Register one request to path; return its 0-based index and its rule."""
        with self._lock:
            index = self.hits.get(path, 0)
            self.hits[path] = index + 1
        res = self.resources.get(path)
        return index, res.rule if res else None

    def add_sent(self, path: str, n: int) -> None:
        with self._lock:
            self.sent[path] = self.sent.get(path, 0) + n

    def reset_counts(self) -> None:
        with self._lock:
            self.hits.clear()
            self.sent.clear()
            self.range_starts.clear()

    def start(self) -> LoopbackServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _first(times: int, index: int) -> bool:
    return times < 0 or index < times


def _handler_for(server: LoopbackServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # one request per connection: a cut body ends with the socket

        def log_message(self, fmt: str, *args: Any) -> None:
            log.debug("loopback: " + fmt, *args)

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            path = self.path.split("?", 1)[0]
            index, rule = server.count(path)
            res = server.resources.get(path)
            if res is None or rule is None:
                self._status(404)
                return
            if rule.latency_s:
                time.sleep(rule.latency_s)
            if rule.stall_s and _first(rule.stall_times, index):
                time.sleep(rule.stall_s)  # the client times out; what follows goes nowhere
            if rule.fail_status and _first(rule.fail_times, index):
                self._status(rule.fail_status, rule.retry_after)
                return
            self._serve(path, res, truncate=_first(rule.truncate_times, index))

        def _status(self, code: int, retry_after: str | None = None) -> None:
            try:
                self.send_response(code)
                self.send_header("Content-Length", "0")
                if retry_after is not None:
                    self.send_header("Retry-After", retry_after)
                self.end_headers()
            except (BrokenPipeError, ConnectionResetError):  # the client gave up first
                pass

        def _serve(self, path: str, res: Resource, truncate: bool) -> None:
            body, start = res.body, 0
            match = _RANGE.fullmatch(self.headers.get("Range", "") or "")
            if match and int(match.group(1)) < len(body):
                start = int(match.group(1))
                end = int(match.group(2)) + 1 if match.group(2) else len(body)
                with server._lock:
                    server.range_starts.setdefault(path, []).append(start)
                part = body[start:end]
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{start + len(part) - 1}/{len(body)}")
            else:
                part = body
                self.send_response(200)
            self.send_header("Content-Type", res.content_type)
            self.send_header("Content-Length", str(len(part)))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            self._write(path, part[: len(part) // 2] if truncate else part, res.rule.bytes_per_s)

        def _write(self, path: str, data: bytes, bytes_per_s: float | None) -> None:
            chunk = 4096 if bytes_per_s else 1 << 16
            try:
                for i in range(0, len(data), chunk):
                    block = data[i:i + chunk]
                    self.wfile.write(block)
                    self.wfile.flush()
                    server.add_sent(path, len(block))
                    if bytes_per_s:
                        time.sleep(len(block) / bytes_per_s)
            except (BrokenPipeError, ConnectionResetError):  # the client was killed mid-transfer
                pass

    return Handler
