from __future__ import annotations

import falcon

from api.resources import body, page_body, page_query
from provisioning.accounts import audit_log, groups, roles


class Roles:
    def on_get(self, req: falcon.Request, resp: falcon.Response, account_id: int) -> None:
        resp.media = {"items": roles.list_roles(req.context.session, req.context.actor,
                                                   account_id), "next_cursor": None}

    def on_post(self, req: falcon.Request, resp: falcon.Response, account_id: int) -> None:
        resp.status = falcon.HTTP_201
        resp.media = roles.create_role(req.context.session, req.context.actor, account_id,
                                          body(req))


class Role:
    def on_patch(self, req: falcon.Request, resp: falcon.Response, account_id: int,
                 role_id: int) -> None:
        resp.media = roles.update_role(req.context.session, req.context.actor, account_id,
                                       role_id, body(req))

    def on_delete(self, req: falcon.Request, resp: falcon.Response, account_id: int,
                  role_id: int) -> None:
        roles.delete_role(req.context.session, req.context.actor, account_id, role_id)
        resp.status = falcon.HTTP_204


class Permissions:
    def on_get(self, req: falcon.Request, resp: falcon.Response, account_id: int) -> None:
        resp.media = {"items": roles.list_permissions(req.context.session, req.context.actor,
                                                      account_id), "next_cursor": None}


class Groups:
    def on_get(self, req: falcon.Request, resp: falcon.Response, account_id: int) -> None:
        resp.media = {"items": groups.list_groups(req.context.session, req.context.actor,
                                                  account_id), "next_cursor": None}

    def on_post(self, req: falcon.Request, resp: falcon.Response, account_id: int) -> None:
        resp.status = falcon.HTTP_201
        resp.media = groups.create_group(req.context.session, req.context.actor, account_id,
                                         body(req))


class Group:
    def on_patch(self, req: falcon.Request, resp: falcon.Response, account_id: int,
                 group_id: int) -> None:
        resp.media = groups.rename_group(req.context.session, req.context.actor, account_id,
                                         group_id, body(req))

    def on_delete(self, req: falcon.Request, resp: falcon.Response, account_id: int,
                  group_id: int) -> None:
        groups.delete_group(req.context.session, req.context.actor, account_id, group_id,
                            req.get_param(groups.MOVE_TO))
        resp.status = falcon.HTTP_204


class Audit:
    def on_get(self, req: falcon.Request, resp: falcon.Response, account_id: int) -> None:
        resp.media = page_body(audit_log.list_audit(
            req.context.session, req.context.actor, account_id, *page_query(req),
            {name: req.get_param(name) for name in audit_log.FILTERS}))
