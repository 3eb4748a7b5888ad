from __future__ import annotations

import falcon

from api.resources import body, int_param
from provisioning import accounts, jobs


class Roles:
    def on_get(self, req: falcon.Request, resp: falcon.Response, account_id: int) -> None:
        resp.media = {"items": accounts.list_roles(req.context.session, req.context.actor,
                                                   account_id), "next_cursor": None}

    def on_post(self, req: falcon.Request, resp: falcon.Response, account_id: int) -> None:
        resp.status = falcon.HTTP_201
        resp.media = accounts.create_role(req.context.session, req.context.actor, account_id,
                                          body(req))


class Groups:
    def on_get(self, req: falcon.Request, resp: falcon.Response, account_id: int) -> None:
        resp.media = {"items": accounts.list_groups(req.context.session, req.context.actor,
                                                    account_id), "next_cursor": None}


class Audit:
    def on_get(self, req: falcon.Request, resp: falcon.Response, account_id: int) -> None:
        limit = min(max(int_param(req, "limit", 100) or 100, 1), 1000)
        items, last = accounts.list_audit(req.context.session, req.context.actor, account_id,
                                          int_param(req, "cursor"), limit)
        resp.media = {"items": items, "next_cursor": None if last is None else str(last)}


class Job:
    def on_get(self, req: falcon.Request, resp: falcon.Response, job_id: int) -> None:
        resp.media = jobs.get_job(req.context.session, req.context.actor, job_id)
