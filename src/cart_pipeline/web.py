"""A local search page: every system the evaluation measured side by side, per modality.

    cart-search --serve [--port 8765]        # or: make serve; then open http://127.0.0.1:8765

One process, Python's own threading HTTP server (nothing to install): ``/`` is the page
(resources/search_page.html), ``/api/search?q=...&k=5`` answers JSON with each system's hits
(CART, CART + rerank, the dual tower, the pair lookup) and the seconds each took, and which
index version each modality serves (``indexes``: version, items added since the build),
``/media/<path>`` serves an indexed item's picture or sound from the dataset (only paths of
items in the index: nothing else on disk is reachable).
"""

from __future__ import annotations

import json
import logging
import mimetypes
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from urllib.parse import parse_qs, unquote, urlparse

from cart_pipeline.search import Retriever, SearchError

logger = logging.getLogger(__name__)

MAX_K = 50
# A connection that sends nothing for this long is closed; at most this many are open at once
# (one more is answered 503 and closed), so idle or slow clients cannot pile up threads.
CONNECTION_TIMEOUT_S = 30
MAX_CONNECTIONS = 32
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def search_payload(retriever: Retriever, query: str, k: int) -> dict:
    """Every loaded system's hits for one query, per modality, with the seconds each took, and
    which index version each modality serves (and how many items add_items put in it)."""
    out: dict = {"query": query, "k": k, "modalities": {}, "indexes": {
        m: {"version": v, "items_added": retriever.items_added.get(m, 0)}
        for m, v in retriever.versions.items()
    }}  # fmt: skip
    for modality in retriever.indexes:
        per_system = {}
        for system in retriever.systems(modality):
            started = time.perf_counter()
            hits = retriever.search([query], k=k, modality=modality, system=system)[0]
            per_system[system] = {
                "seconds": time.perf_counter() - started,
                "hits": [
                    {
                        "rank": h.rank,
                        "item_id": h.item_id,
                        "score": h.score,
                        "description": h.description,
                        "media_url": f"/media/{h.media_path}" if h.media_path else "",
                    }
                    for h in hits
                ],
            }
        out["modalities"][modality] = per_system
    return out


def make_handler(
    retriever: Retriever, allowed_hosts: frozenset[str] = LOOPBACK_HOSTS
) -> type[BaseHTTPRequestHandler]:
    """``allowed_hosts``: the names a request's `Host:` header may give (a page bound to
    loopback answers loopback names only, which keeps DNS-rebinding pages from reading it)."""
    page = (files("cart_pipeline") / "resources" / "search_page.html").read_bytes()
    root = retriever.dataset_root.resolve() if retriever.dataset_root else None
    media = {path for _, path in retriever.items.values()}  # the only files the page may read
    one_search_at_a_time = threading.Lock()  # the models are shared by the server's threads

    class Handler(BaseHTTPRequestHandler):
        timeout = CONNECTION_TIMEOUT_S  # socket timeout of every read: idle clients let go

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            host = _host_name(self.headers.get("Host", ""))
            if host not in allowed_hosts:
                return self._error(HTTPStatus.BAD_REQUEST, f"host {host!r} is not served here")
            url = urlparse(self.path)
            if url.path == "/":
                self._send(HTTPStatus.OK, page, "text/html; charset=utf-8")
            elif url.path == "/api/search":
                self._search(parse_qs(url.query))
            elif url.path.startswith("/media/"):
                self._media(unquote(url.path.removeprefix("/media/")))
            else:
                self._error(HTTPStatus.NOT_FOUND, f"no page {url.path}")

        def _search(self, query: dict) -> None:
            text = (query.get("q") or [""])[0].strip()
            try:
                k = int((query.get("k") or ["5"])[0])
            except ValueError:
                return self._error(HTTPStatus.BAD_REQUEST, "k must be a whole number")
            if not text:
                return self._error(HTTPStatus.BAD_REQUEST, "empty query")
            if not 1 <= k <= MAX_K:
                return self._error(HTTPStatus.BAD_REQUEST, f"k must be in 1..{MAX_K}")
            try:
                with one_search_at_a_time:
                    payload = search_payload(retriever, text, k)
            except SearchError as error:
                return self._error(HTTPStatus.BAD_REQUEST, str(error))
            self._send(HTTPStatus.OK, json.dumps(payload).encode(), "application/json")

        def _media(self, relative: str) -> None:
            if "\x00" in relative:
                return self._error(HTTPStatus.BAD_REQUEST, "a media path holds no NUL byte")
            path = (root / relative).resolve() if root else None
            if path is None or relative not in media or not path.is_relative_to(root):
                return self._error(HTTPStatus.NOT_FOUND, "not an indexed media file")
            if not path.is_file():
                return self._error(HTTPStatus.NOT_FOUND, f"{relative} is missing on disk")
            kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            self._send(HTTPStatus.OK, path.read_bytes(), kind)

        def _error(self, status: HTTPStatus, message: str) -> None:
            self._send(status, json.dumps({"error": message}).encode(), "application/json")

        def _send(self, status: HTTPStatus, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base's name)
            logger.info("%s %s", self.address_string(), format % args)

    return Handler


def _host_name(header: str) -> str:
    """The host of a `Host:` header, without its port (`[::1]:8765` -> `::1`)."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class BoundedServer(ThreadingHTTPServer):
    """A thread per connection, at most ``MAX_CONNECTIONS`` of them: one more gets a 503."""

    daemon_threads = True

    def __init__(self, *args, max_connections: int = MAX_CONNECTIONS, **kwargs):
        super().__init__(*args, **kwargs)
        self._slots = threading.BoundedSemaphore(max_connections)

    def process_request(self, request, client_address) -> None:
        if not self._slots.acquire(blocking=False):
            body = b'{"error": "too many connections"}'
            head = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            head += f"Connection: close\r\nContent-Length: {len(body)}\r\n\r\n"
            try:
                request.sendall(head.encode() + body)
            except OSError:  # the client went away first
                pass
            finally:
                self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def serve(
    retriever: Retriever,
    host: str = "127.0.0.1",
    port: int = 8765,
    allowed_hosts: tuple[str, ...] = (),
) -> None:
    """The page on ``host:port``; requests must name a loopback host, ``host`` itself or one
    of ``allowed_hosts`` (e.g. the name a reverse proxy forwards)."""
    names = LOOPBACK_HOSTS | {host.lower()} | {h.lower() for h in allowed_hosts}
    server = BoundedServer((host, port), make_handler(retriever, frozenset(names)))
    print(f"search page on http://{host}:{server.server_port} (Ctrl+C stops it)", flush=True)  # noqa: T201
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
