from __future__ import annotations

import falcon

from api.resources import body, int_param, shaped
from provisioning.members import directory, invitations, invite

FILTERS = ("status", "q", "group", "role", "user_type", "two_factor")


class Members:
    def on_get(self, req: falcon.Request, resp: falcon.Response, account_id: int) -> None:
        page = directory.list_members(
            req.context.session, req.context.actor, account_id,
            {name: req.get_param(name) for name in FILTERS},
            req.get_param("cursor"), int_param(req, "limit"),
        )
        resp.media = {"items": [shaped(item) for item in page.items],
                      "next_cursor": page.next_cursor, "total": page.total}

    def on_post(self, req: falcon.Request, resp: falcon.Response, account_id: int) -> None:
        member = invite.invite_member(req.context.session, req.context.actor, account_id,
                                       body(req))
        resp.status = falcon.HTTP_201
        resp.location = f"/v1/accounts/{account_id}/users/{member.id}"
        resp.media = shaped(member)


class Member:
    def on_get(self, req: falcon.Request, resp: falcon.Response, account_id: int,
               member_id: int) -> None:
        resp.media = shaped(directory.get_member(req.context.session, req.context.actor,
                                               account_id, member_id))


class MemberInvitation:
    def on_delete(self, req: falcon.Request, resp: falcon.Response, account_id: int,
                  member_id: int) -> None:
        resp.media = shaped(invitations.revoke_invitation(
            req.context.session, req.context.actor, account_id, member_id))


class MemberInvitationResend:
    def on_post(self, req: falcon.Request, resp: falcon.Response, account_id: int,
                member_id: int) -> None:
        resp.media = shaped(invitations.resend_invitation(
            req.context.session, req.context.actor, account_id, member_id))
