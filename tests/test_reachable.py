"""A tracking server's health check before anything runs: a restarting server behind a proxy is waited for, a
server that stays down is named."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mnist_tracking.errors import ConfigError
from mnist_tracking.tracking import store


@pytest.fixture
def proxy() -> Iterator[tuple[str, list[int]]]:
    """A server whose /health answers the statuses in the list in turn, then 200; and the list."""
    statuses: list[int] = []

    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(statuses.pop(0) if statuses else 200)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", statuses
    server.shutdown()


def test_a_server_restarting_behind_a_proxy_is_asked_again(proxy):
    uri, statuses = proxy
    statuses.extend([502, 503, 504])
    store.check_reachable(uri, restarting_s=5)
    assert statuses == []


def test_a_server_that_stays_down_behind_a_proxy_is_named(proxy):
    uri, statuses = proxy
    statuses.extend([503] * 100)
    with pytest.raises(ConfigError, match=rf"mlflow.tracking_uri='{uri}' is unreachable \(HTTPError\)"):
        store.check_reachable(uri, restarting_s=0.5)
    assert len(statuses) < 100


def test_a_server_error_is_not_waited_for(proxy):
    uri, statuses = proxy
    statuses.extend([500, 200])
    with pytest.raises(ConfigError, match="is unreachable"):
        store.check_reachable(uri, restarting_s=30)
    assert statuses == [200]
