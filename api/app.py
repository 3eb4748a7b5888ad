"""The WSGI application: middleware, error handlers and the whole URL map in one screen."""

from __future__ import annotations

import json
from datetime import date, datetime
from functools import partial
from typing import Any

import falcon
import falcon.media

from api import errors, middleware
from api.resources import accounts, auth, invitations, jobs, members, pages, system


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def create_app() -> falcon.App:
    chain: list[Any] = [
        middleware.RequestId(),
        middleware.DatabaseSession(),  # before Authentication, which needs the session
        middleware.Authentication(),
    ]
    app = falcon.App(middleware=chain)
    json_handler = falcon.media.JSONHandler(dumps=partial(json.dumps, default=_json_default,
                                                          ensure_ascii=False))
    app.req_options.media_handlers[falcon.MEDIA_JSON] = json_handler
    app.resp_options.media_handlers.update({falcon.MEDIA_JSON: json_handler,
                                            errors.PROBLEM: json_handler})
    app.req_options.strip_url_path_trailing_slash = True
    errors.register(app)

    account = "/v1/accounts/{account_id:int}"
    member = account + "/users/{member_id:int}"
    routes: list[tuple[str, object]] = [
        ("/healthz", system.Health()),
        ("/readyz", system.Ready()),
        ("/openapi.json", system.OpenApi()),
        ("/v1/auth/login", auth.Login()),
        ("/v1/auth/logout", auth.Logout()),
        ("/v1/me", auth.Me()),
        (account + "/api-keys", auth.ApiKeys()),
        (account + "/api-keys/{key_id:int}", auth.ApiKey()),
        (account + "/users", members.Members()),
        (member, members.Member()),
        (member + "/invitation", members.MemberInvitation()),
        (member + "/invitation/resend", members.MemberInvitationResend()),
        (account + "/roles", accounts.Roles()),
        (account + "/groups", accounts.Groups()),
        (account + "/audit", accounts.Audit()),
        (account + "/imports", jobs.Imports()),
        (account + "/imports/{job_id:int}", jobs.Import()),
        (account + "/imports/{job_id:int}/rows.csv", jobs.ImportRows()),
        (account + "/imports/{job_id:int}/commit", jobs.ImportCommit()),
        ("/v1/jobs/{job_id:int}", jobs.Job()),
        ("/v1/jobs/{job_id:int}/errors.csv", jobs.JobErrors()),
        ("/v1/jobs/{job_id:int}/cancel", jobs.JobCancel()),
        ("/v1/invitations/{token}", invitations.InvitationPreview()),
        ("/v1/invitations/{token}/accept", invitations.InvitationAccept()),
        ("/v1/invitations/{token}/renew", invitations.InvitationRenew()),
        ("/invitations/{token}", pages.InvitationPage()),
    ]
    for path, resource in routes:
        app.add_route(path, resource)
    return app
