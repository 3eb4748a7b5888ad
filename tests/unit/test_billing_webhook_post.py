"""What counts as delivered: a 2xx answer to the POST itself; a redirect, an error status or no
answer at all is a refusal the outbox retries."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from provisioning.billing.webhooks import WebhookRefused, post
from tests.support.processes import free_port


@pytest.fixture(scope="module")
def receiver() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status = int(self.path.rsplit("/", 1)[1])
            self.send_response(status)
            if status == 302:
                self.send_header("Location", "/answer/200")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:  # where a followed redirect would land
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("status", [200, 202, 204])
def test_a_2xx_is_delivered(receiver: str, status: int) -> None:
    post(f"{receiver}/answer/{status}", b"{}", {}, 5)


@pytest.mark.parametrize("status", [302, 400, 401, 404, 408, 410, 429, 500, 503])
def test_any_other_answer_is_refused(receiver: str, status: int) -> None:
    with pytest.raises(WebhookRefused, match=str(status)):
        post(f"{receiver}/answer/{status}", b"{}", {}, 5)


def test_no_answer_is_refused() -> None:
    with pytest.raises(WebhookRefused, match="unreachable"):
        post(f"http://127.0.0.1:{free_port()}/nobody", b"{}", {}, 5)
