from __future__ import annotations

import falcon

from api.resources import body, int_param
from provisioning.accounts import audit_log, roles


class Roles:
    def on_get(self, req: falcon.Request, resp: falcon.Response, account_id: int) -> None:
        resp.media = {"items": roles.list_roles(req.context.session, req.context.actor,
                                                   account_id), "next_cursor": None}

    def on_post(self, req: falcon.Request, resp: falcon.Response, account_id: int) -> None:
        resp.status = falcon.HTTP_201
        resp.media = roles.create_role(req.context.session, req.context.actor, account_id,
                                          body(req))


class Permissions:
    def on_get(self, req: falcon.Request, resp: falcon.Response, account_id: int) -> None:
        resp.media = {"items": roles.list_permissions(req.context.session, req.context.actor,
                                                      account_id), "next_cursor": None}


class Groups:
    def on_get(self, req: falcon.Request, resp: falcon.Response, account_id: int) -> None:
        resp.media = {"items": roles.list_groups(req.context.session, req.context.actor,
                                                    account_id), "next_cursor": None}


class Audit:
    def on_get(self, req: falcon.Request, resp: falcon.Response, account_id: int) -> None:
        items, next_cursor = audit_log.list_audit(
            req.context.session, req.context.actor, account_id, req.get_param("cursor"),
            int_param(req, "limit"),
            {name: req.get_param(name) for name in audit_log.FILTERS})
        resp.media = {"items": items, "next_cursor": next_cursor}
