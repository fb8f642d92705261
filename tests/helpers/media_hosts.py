"""A scriptable HTTP host on a loopback address for the media tests (unit and end to end).

Routes: any name in ``files`` (200 with Content-Length), ``redirect?to=URL`` (302),
``big?bytes=N`` / ``big-cl?bytes=N`` (N zero bytes without / with Content-Length; 100 MB when N
is not given), ``silent`` (accepts, never answers), ``drip`` (one byte per ``drip_s``), ``gzip``
(``gzip_body`` with Content-Encoding: gzip), anything else 404. ``hits`` counts requests per
name; ``sent_big`` is how much of ``/big*`` the client took before hanging up.
"""

from __future__ import annotations

import contextlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

MB = 1024 * 1024


class MediaHost:
    def __init__(
        self,
        files: dict[str, bytes],
        *,
        host: str = "127.0.0.1",
        silent_s: float = 20.0,
        drip_s: float = 0.1,
        chunk_bytes: int = 256 * 1024,
        gzip_body: bytes | None = None,
    ) -> None:
        self.files = files
        self.host = host
        self.silent_s = silent_s
        self.drip_s = drip_s
        self.chunk = b"\x00" * chunk_bytes
        self.gzip_body = gzip_body
        self.hits: dict[str, int] = {}
        self.sent_big = 0
        self.stop = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    owner.route(self)

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str, host: str | None = None) -> str:
        return f"http://{host or self.host}:{self.port}/{path.lstrip('/')}"

    def close(self) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def _reply(self, h: BaseHTTPRequestHandler, body: bytes, *headers: tuple[str, str]) -> None:
        h.send_response(200)
        for name, value in headers:
            h.send_header(name, value)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def route(self, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        name = parts.path.lstrip("/")
        query = parse_qs(parts.query)
        self.hits[name] = self.hits.get(name, 0) + 1
        if name in self.files:
            self._reply(h, self.files[name])
        elif name == "redirect":
            h.send_response(302)
            h.send_header("Location", query["to"][0])
            h.end_headers()
        elif name in ("big", "big-cl"):
            total = int(query.get("bytes", [str(100 * MB)])[0])
            h.send_response(200)
            if name == "big-cl":
                h.send_header("Content-Length", str(total))
            h.end_headers()
            sent = 0
            while sent < total and not self.stop.is_set():
                h.wfile.write(self.chunk)
                sent += len(self.chunk)
                self.sent_big = sent
        elif name == "silent":
            self.stop.wait(self.silent_s)
        elif name == "drip":
            h.send_response(200)
            h.send_header("Content-Length", "1000")
            h.end_headers()
            for _ in range(1000):
                if self.stop.wait(self.drip_s):
                    break
                h.wfile.write(b"\x00")
                h.wfile.flush()
        elif name == "gzip" and self.gzip_body is not None:
            self._reply(h, self.gzip_body, ("Content-Encoding", "gzip"))
        else:
            h.send_response(404)
            h.send_header("Content-Length", "0")
            h.end_headers()
