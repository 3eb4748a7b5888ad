from __future__ import annotations

import falcon

from api.resources import body, bool_param, int_param, shaped
from provisioning.members import bulk, changes, directory, invitations, invite, lifecycle
from provisioning.members.targets import TARGET_FIELDS, TargetRequest

FILTERS = ("status", "q", "group", "role", "user_type", "two_factor")


class Members:
    def on_get(self, req: falcon.Request, resp: falcon.Response, account_id: int) -> None:
        page = directory.list_members(
            req.context.session, req.context.actor, account_id,
            {name: req.get_param(name) for name in FILTERS},
            req.get_param("cursor"), int_param(req, "limit"),
            with_total=bool_param(req, "total"),
        )
        resp.media = {"items": [shaped(item) for item in page.items],
                      "next_cursor": page.next_cursor}
        if page.total is not None:
            resp.media["total"] = page.total

    def on_post(self, req: falcon.Request, resp: falcon.Response, account_id: int) -> None:
        member = invite.invite_member(req.context.session, req.context.actor, account_id,
                                       body(req))
        resp.status = falcon.HTTP_201
        resp.location = f"/v1/accounts/{account_id}/users/{member.id}"
        resp.media = shaped(member)


def _answered(resp: falcon.Response, answer: lifecycle.Answer) -> None:
    """200 with the member, or 202 with the job that moves their records (and the member)."""
    if answer.job is None:
        resp.media = shaped(answer.member)
        return
    resp.status = falcon.HTTP_202
    resp.location = f"/v1/jobs/{answer.job['id']}"
    resp.media = {"job": answer.job, "member": shaped(answer.member)}


class Member:
    def on_get(self, req: falcon.Request, resp: falcon.Response, account_id: int,
               member_id: int) -> None:
        resp.media = shaped(directory.get_member(req.context.session, req.context.actor,
                                               account_id, member_id))

    def on_patch(self, req: falcon.Request, resp: falcon.Response, account_id: int,
                 member_id: int) -> None:
        resp.media = shaped(changes.update_member(req.context.session, req.context.actor,
                                                  account_id, member_id, body(req)))

    def on_delete(self, req: falcon.Request, resp: falcon.Response, account_id: int,
                  member_id: int) -> None:
        targets = TargetRequest.parse({name: req.get_param(name) for name in TARGET_FIELDS})
        _answered(resp, lifecycle.remove_member(req.context.session, req.context.actor,
                                                account_id, member_id, targets))


class MemberDisable:
    def on_post(self, req: falcon.Request, resp: falcon.Response, account_id: int,
                member_id: int) -> None:
        _answered(resp, lifecycle.disable_member(req.context.session, req.context.actor,
                                                 account_id, member_id, body(req)))


class MemberActivate:
    def on_post(self, req: falcon.Request, resp: falcon.Response, account_id: int,
                member_id: int) -> None:
        _answered(resp, lifecycle.activate_member(req.context.session, req.context.actor,
                                                  account_id, member_id))


class MemberRecords:
    def on_get(self, req: falcon.Request, resp: falcon.Response, account_id: int,
               member_id: int) -> None:
        resp.media = lifecycle.member_records(req.context.session, req.context.actor,
                                              account_id, member_id)


class MembersBulk:
    def on_post(self, req: falcon.Request, resp: falcon.Response, account_id: int) -> None:
        job = bulk.start_bulk_action(req.context.session, req.context.actor, account_id,
                                     body(req))
        resp.status = falcon.HTTP_202
        resp.location = f"/v1/jobs/{job['id']}"
        resp.media = {"job": job}


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
