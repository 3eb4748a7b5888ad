from __future__ import annotations

import falcon

from api.resources import body, shaped
from provisioning.members import invitations
from provisioning.members.directory import ADMIN_ONLY


class InvitationPreview:
    auth = "none"

    def on_get(self, req: falcon.Request, resp: falcon.Response, token: str) -> None:
        resp.media = shaped(invitations.preview_invitation(req.context.session, token))


class InvitationAccept:
    auth = "optional"  # an existing identity may prove itself with its bearer token

    def on_post(self, req: falcon.Request, resp: falcon.Response, token: str) -> None:
        # the invitee reads their own member object: not what only admins see (R12)
        resp.media = shaped(invitations.accept_invitation(
            req.context.session, token, body(req), req.context.actor), omit=ADMIN_ONLY)


class InvitationRenew:
    auth = "none"

    def on_post(self, req: falcon.Request, resp: falcon.Response, token: str) -> None:
        invitations.renew_expired_invitation(req.context.session, token)
        resp.status = falcon.HTTP_202
        resp.media = {"status": "sent", "detail": "A fresh invitation is on its way."}
