"""The HTTP side of the sink: a JSON API and two HTML pages, served from a thread.

Lists are newest first; a ``limit`` above 1,000 is taken as 1,000; the cursor is
the id of the last message of the previous page. Routes are all in ``create_app``.
"""

from __future__ import annotations

import json
import threading
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import falcon
from jinja2 import DictLoader, Environment

from mailsink.store import MessageStore, SearchResult, StoredMessage

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000

# Inline (not files) so the package stays self-contained; autoescape covers every value.
_TEMPLATES = {
    "base.html": """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{% block title %}{% endblock %} · mailsink</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #222; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; vertical-align: top; padding: .3rem .6rem; }
tr { border-bottom: 1px solid #ddd; }
pre { white-space: pre-wrap; background: #f6f6f6; padding: .8rem; }
iframe { width: 100%; height: 32rem; border: 1px solid #ccc; }
</style></head>
<body><h1><a href="/">mailsink</a></h1>{% block body %}{% endblock %}</body></html>
""",
    "inbox.html": """{% extends "base.html" %}
{% block title %}Messages{% endblock %}
{% block body %}
<form method="get" action="/">
  <input name="q" value="{{ q }}" placeholder="text">
  <input name="to" value="{{ to }}" placeholder="recipient address">
  <button>Search</button>
</form>
<p>{{ page.total }} message(s), newest first.</p>
<table>
<tr><th>Subject</th><th>To</th><th>Date</th><th>Deliveries</th></tr>
{% for message in page.messages %}
<tr>
  <td><a href="/messages/{{ message.id }}">{{ message.subject or "(no subject)" }}</a></td>
  <td>{{ message.to_header or message.envelope_to|join(", ") }}</td>
  <td>{{ message.date_header or message.received_at }}</td>
  <td>{{ message.delivery_count }}</td>
</tr>
{% endfor %}
</table>
{% if next_url %}<p><a href="{{ next_url }}">Older messages</a></p>{% endif %}
{% endblock %}
""",
    "message.html": """{% extends "base.html" %}
{% block title %}{{ message.subject }}{% endblock %}
{% block body %}
<h2>{{ message.subject or "(no subject)" }}</h2>
<p>Envelope from {{ message.envelope_from }} to {{ message.envelope_to|join(", ") }};
delivered {{ message.delivery_count }} time(s); {{ message.size }} bytes;
<a href="/api/messages/{{ message.id }}/raw">raw source</a>.</p>
<table>
{% for name, value in message.headers %}<tr><th>{{ name }}</th><td>{{ value }}</td></tr>
{% endfor %}
</table>
{% if message.text is not none %}<h3>Text</h3><pre>{{ message.text }}</pre>{% endif %}
{% if message.html is not none %}<h3>HTML</h3>
<iframe sandbox srcdoc="{{ message.html }}"></iframe>{% endif %}
{% endblock %}
""",
    "error.html": """{% extends "base.html" %}
{% block title %}{{ title }}{% endblock %}
{% block body %}<h2>{{ title }}</h2><p>{{ detail }}</p>{% endblock %}
""",
}

_PAGES = Environment(loader=DictLoader(_TEMPLATES), autoescape=True)

# The sandboxed iframe already blocks scripts; this also covers the page around it.
_PAGE_POLICY = "script-src 'none'; object-src 'none'"


def message_json(message: StoredMessage) -> dict[str, Any]:
    """The JSON shape of one message in the API."""
    return {
        "id": message.id,
        "message_id": message.message_id,
        "from": message.from_header,
        "to": message.to_header,
        "subject": message.subject,
        "date": message.date_header,
        "text": message.text,
        "html": message.html,
        "headers": message.headers,
        "delivery_count": message.delivery_count,
        "envelope_from": message.envelope_from,
        "envelope_to": message.envelope_to,
        "size": message.size,
        "received_at": message.received_at,
    }


def _search(store: MessageStore, req: falcon.Request) -> SearchResult:
    """Run the search that ``to``, ``q``, ``cursor`` and ``limit`` describe."""
    cursor = req.get_param("cursor") or None
    if cursor is not None and not (cursor.isascii() and cursor.isdigit()):
        raise falcon.HTTPInvalidParam("expected a cursor from a previous page", "cursor")
    limit = req.get_param_as_int("limit", min_value=1, default=DEFAULT_LIMIT)
    return store.search(
        to=req.get_param("to"),
        q=req.get_param("q"),
        cursor=int(cursor) if cursor is not None else None,
        limit=min(limit, MAX_LIMIT),
    )


def _get_or_404(store: MessageStore, message_id: int) -> StoredMessage:
    message = store.get(message_id)
    if message is None:
        raise falcon.HTTPNotFound(description=f"There is no message {message_id}.")
    return message


def _render(resp: falcon.Response, template: str, **context: Any) -> None:
    resp.content_type = falcon.MEDIA_HTML
    resp.set_header("Content-Security-Policy", _PAGE_POLICY)
    resp.text = _PAGES.get_template(template).render(**context)


class MessagesResource:
    """``/api/messages``: search, or delete everything."""

    def __init__(self, store: MessageStore) -> None:
        self._store = store

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        page = _search(self._store, req)
        resp.media = {
            "items": [message_json(message) for message in page.messages],
            "total": page.total,
            "next_cursor": page.next_cursor,
        }

    def on_delete(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"deleted": self._store.delete_all()}


class MessageResource:
    """``/api/messages/{id}``: one message."""

    def __init__(self, store: MessageStore) -> None:
        self._store = store

    def on_get(self, req: falcon.Request, resp: falcon.Response, message_id: int) -> None:
        resp.media = message_json(_get_or_404(self._store, message_id))


class RawMessageResource:
    """``/api/messages/{id}/raw``: the source exactly as received."""

    def __init__(self, store: MessageStore) -> None:
        self._store = store

    def on_get(self, req: falcon.Request, resp: falcon.Response, message_id: int) -> None:
        raw = self._store.raw(message_id)
        if raw is None:
            raise falcon.HTTPNotFound(description=f"There is no message {message_id}.")
        resp.content_type = "message/rfc822"
        resp.data = raw


class HealthResource:
    """``/api/health``."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"status": "ok"}


class InboxPage:
    """``/``: the message list with a search form."""

    def __init__(self, store: MessageStore) -> None:
        self._store = store

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        page = _search(self._store, req)
        q, to = req.get_param("q") or "", req.get_param("to") or ""
        next_url = None
        if page.next_cursor:
            next_url = "/?" + falcon.to_query_str(
                {"q": q, "to": to, "cursor": page.next_cursor}, prefix=False
            )
        _render(resp, "inbox.html", page=page, q=q, to=to, next_url=next_url)


class MessagePage:
    """``/messages/{id}``: one message with its headers, text and HTML."""

    def __init__(self, store: MessageStore) -> None:
        self._store = store

    def on_get(self, req: falcon.Request, resp: falcon.Response, message_id: int) -> None:
        _render(resp, "message.html", message=_get_or_404(self._store, message_id))


def _serialize_error(req: falcon.Request, resp: falcon.Response, error: falcon.HTTPError) -> None:
    """Problem JSON for the API, a small HTML page for the pages."""
    detail = error.description or ""
    if req.path.startswith("/api/"):
        resp.content_type = "application/problem+json"
        resp.text = json.dumps(
            {"title": error.title, "status": error.status_code, "detail": detail}
        )
    else:
        _render(resp, "error.html", title=error.title, detail=detail)


def create_app(store: MessageStore) -> falcon.App:
    """The WSGI app with every route of the sink."""
    app = falcon.App()
    app.set_error_serializer(_serialize_error)
    app.add_route("/api/health", HealthResource())
    app.add_route("/api/messages", MessagesResource(store))
    app.add_route("/api/messages/{message_id:int}", MessageResource(store))
    app.add_route("/api/messages/{message_id:int}/raw", RawMessageResource(store))
    app.add_route("/", InboxPage(store))
    app.add_route("/messages/{message_id:int}", MessagePage(store))
    return app


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietRequestHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Drop the per-request access line: it would flood the log under test load."""


class HttpServer:
    """The WSGI server on its own thread (one more thread per request)."""

    def __init__(self, app: falcon.App, host: str, port: int) -> None:
        self._server = make_server(
            host,
            port,
            app,
            server_class=_ThreadingWSGIServer,
            handler_class=_QuietRequestHandler,
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="mailsink-http", daemon=True
        )

    @property
    def port(self) -> int:
        """The port actually bound (useful when asked for port 0)."""
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Serve requests on the background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
