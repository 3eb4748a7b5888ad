"""The WSGI application: middleware, error handlers and the routes of the route table."""

from __future__ import annotations

import json
from datetime import date, datetime
from functools import partial
from typing import Any

import falcon
import falcon.media

from api import bodies, errors, middleware
from api.openapi import add_routes
from api.routes import routes
from provisioning.billing import announcements

# Imported for its session hooks: a request that writes a billing event wakes an announcer.
assert announcements.ANNOUNCE_TASK


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def create_app() -> falcon.App:
    chain: list[Any] = [
        middleware.SecurityHeaders(),  # first: its headers go on every answer, errors too
        middleware.RequestId(),
        bodies.BodyLimit(),  # before any database work: an oversize body costs nothing
        middleware.DatabaseSession(),  # before Authentication, which needs the session
        middleware.Authentication(),
    ]
    app = falcon.App(middleware=chain)
    json_handler = falcon.media.JSONHandler(dumps=partial(json.dumps, default=_json_default,
                                                          ensure_ascii=False),
                                            loads=bodies.json_loads)
    app.req_options.media_handlers[falcon.MEDIA_JSON] = json_handler
    app.resp_options.media_handlers.update({falcon.MEDIA_JSON: json_handler,
                                            errors.PROBLEM: json_handler})
    app.req_options.strip_url_path_trailing_slash = True
    errors.register(app)

    add_routes(app, routes())  # the URL map: api/routes.py
    return app
