"""problem+json (RFC 9457) for every error; never a stack trace."""

from __future__ import annotations

import logging
from typing import Any

import falcon
from sqlalchemy.exc import IntegrityError, OperationalError

from api.bodies import NestedTooDeep
from api.redaction import redact
from provisioning.core import errors
from provisioning.core.db import is_conflict

log = logging.getLogger(__name__)

PROBLEM = "application/problem+json"

STATUS = {
    errors.InvalidInput: 422,
    errors.NotAuthenticated: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.Gone: 410,
    errors.SeatLimitReached: 402,
    errors.RateLimited: 429,
    errors.PayloadTooLarge: 413,
    errors.UnsupportedMediaType: 415,
}


def problem(
    resp: falcon.Response,
    status: int,
    *,
    title: str,
    detail: str,
    code: str,
    field_errors: list[dict[str, str]] | None = None,
) -> None:
    resp.status = status
    resp.content_type = PROBLEM
    resp.media = {
        "type": f"https://provisioner.dev/problems/{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        "errors": field_errors or [],
    }


def _provisioning_error(req: falcon.Request, resp: falcon.Response,
                        ex: errors.ProvisioningError, _params: Any) -> None:
    status = next((code for kind, code in STATUS.items() if isinstance(ex, kind)), 400)
    problem(resp, status, title=ex.title, detail=ex.detail, code=ex.code,
            field_errors=[{"field": e.field, "message": e.message, "code": e.code}
                          for e in ex.errors])
    if ex.retry_after is not None:
        resp.set_header("Retry-After", str(ex.retry_after))


def _http_error(req: falcon.Request, resp: falcon.Response, ex: falcon.HTTPError,
                _params: Any) -> None:
    field_errors = []
    code = (ex.code and str(ex.code)) or falcon.code_to_http_status(ex.status).split(" ", 1)[1]
    code = code.lower().replace(" ", "_")
    detail = ex.description or ex.title or ""
    if isinstance(ex.__cause__, NestedTooDeep):
        detail = str(ex.__cause__)
        field_errors = [{"field": "body", "message": detail, "code": "too_deep"}]
        code = "too_deep"
    elif isinstance(ex, falcon.MediaMalformedError | falcon.MediaNotFoundError):
        field_errors = [{"field": "body", "message": "The body is not valid JSON.",
                         "code": "invalid_json"}]
        code = "invalid_json"
    elif isinstance(ex, falcon.HTTPInvalidParam | falcon.HTTPMissingParam):
        name = getattr(ex, "param_name", None) or "query"
        field_errors = [{"field": name, "message": ex.description or "Invalid.", "code": "invalid"}]
    status = falcon.http_status_to_code(ex.status)
    problem(resp, status, title=ex.title or "Error", detail=detail, code=code,
            field_errors=field_errors)
    if ex.headers:
        resp.set_headers(ex.headers)


def raced(resp: falcon.Response) -> None:
    """Two requests raced for the same unique value; the loser is told to look again."""
    problem(resp, 409, title="Conflict", code="conflict",
            detail="Someone else changed this at the same moment; reload and try again.")


def _integrity_error(req: falcon.Request, resp: falcon.Response, ex: IntegrityError,
                     _params: Any) -> None:
    if is_conflict(ex):
        raced(resp)
    else:
        _unexpected(req, resp, ex, _params)


def _unavailable(req: falcon.Request, resp: falcon.Response, ex: OperationalError,
                 _params: Any) -> None:
    log.exception("database unavailable")
    problem(resp, 503, title="Service unavailable", code="unavailable",
            detail="The database is not reachable right now; try again shortly.")
    resp.set_header("Retry-After", "5")


def _unexpected(req: falcon.Request, resp: falcon.Response, ex: Exception,
                _params: Any) -> None:
    log.exception("unexpected error on %s %s", req.method, redact(req.relative_uri))
    problem(resp, 500, title="Internal error", code="internal_error",
            detail=f"Something went wrong on our side (request {req.context.request_id}).")


def register(app: falcon.App) -> None:
    """Most specific last: Falcon picks the handler of the nearest base class."""
    app.add_error_handler(Exception, _unexpected)
    app.add_error_handler(OperationalError, _unavailable)
    app.add_error_handler(IntegrityError, _integrity_error)
    app.add_error_handler(falcon.HTTPError, _http_error)
    app.add_error_handler(errors.ProvisioningError, _provisioning_error)
