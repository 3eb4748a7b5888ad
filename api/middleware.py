"""Cross-cutting request work: request ids, security headers, one DB session per request,
authentication."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import falcon
from sqlalchemy.exc import IntegrityError

from api.errors import raced
from provisioning.access.auth import authenticate
from provisioning.core.db import is_conflict, new_session

log = logging.getLogger(__name__)


class RequestId:
    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.request_id = req.get_header("X-Request-ID") or uuid.uuid4().hex
        resp.set_header("X-Request-ID", req.context.request_id)


class SecurityHeaders:
    """Every answer: never stored by a cache (answers carry tokens and members' details), never
    sniffed or framed, and no Referer sent on from it. An answer runs nothing unless it sets
    its own Content-Security-Policy (the invitation page does)."""

    ALWAYS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
              "X-Frame-Options": "DENY"}
    UNLESS_SET = {"Cache-Control": "no-store",
                  "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'"}

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any,
                         req_succeeded: bool) -> None:
        resp.set_headers(self.ALWAYS)
        for name, value in self.UNLESS_SET.items():
            if resp.get_header(name) is None:
                resp.set_header(name, value)


class DatabaseSession:
    """Opens a session for the request; commits if the request succeeded, else rolls back."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.session = None

    def process_resource(self, req: falcon.Request, resp: falcon.Response, resource: Any,
                         params: dict[str, Any]) -> None:
        if getattr(resource, "uses_database", True):
            req.context.session = new_session()

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any,
                         req_succeeded: bool) -> None:
        session = req.context.session
        if session is None:
            return
        try:
            if req_succeeded and resp.status_code < 400:
                session.commit()
            else:
                session.rollback()
        except IntegrityError as error:  # the commit itself met a racing request
            session.rollback()
            if not is_conflict(error):
                raise
            raced(resp)
        finally:
            session.close()


class Authentication:
    """Resources are private unless they say ``auth = "none"`` or ``auth = "optional"``."""

    def process_resource(self, req: falcon.Request, resp: falcon.Response, resource: Any,
                         params: dict[str, Any]) -> None:
        req.context.actor = None
        mode = getattr(resource, "auth", "required")
        if mode == "none" or resource is None:
            return
        bearer = _bearer(req)
        if bearer is None and mode == "optional":
            return
        # the account the URL names: the policy's check rides on the token lookup
        req.context.actor = authenticate(req.context.session, bearer, params.get("account_id"))


def _bearer(req: falcon.Request) -> str | None:
    header = req.get_header("Authorization") or ""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
