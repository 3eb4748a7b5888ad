from __future__ import annotations

import falcon

from api.clients import client_of
from api.resources import body, shaped
from provisioning.access import auth
from provisioning.core.validation import Form


class Login:
    auth = "none"

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        form = Form(body(req))
        email = form.text("email", required=True, max_length=320)
        password = form.secret("password", required=True)
        totp_code = form.text("totp_code", max_length=12)
        form.finish()
        assert email is not None and password is not None
        issued = auth.login(req.context.session, email, password, totp_code,
                            client=client_of(req))
        resp.media = {"token": issued.token, "expires_at": issued.expires_at}


class Logout:
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        auth.logout(req.context.session, req.context.actor)
        resp.status = falcon.HTTP_204


class ApiKeys:
    def on_get(self, req: falcon.Request, resp: falcon.Response, account_id: int) -> None:
        resp.media = {"items": auth.list_api_keys(req.context.session, req.context.actor,
                                                  account_id), "next_cursor": None}

    def on_post(self, req: falcon.Request, resp: falcon.Response, account_id: int) -> None:
        issued = auth.create_api_key(req.context.session, req.context.actor, account_id,
                                     body(req))
        resp.status = falcon.HTTP_201
        resp.media = shaped(issued)


class ApiKey:
    def on_delete(self, req: falcon.Request, resp: falcon.Response, account_id: int,
                  key_id: int) -> None:
        auth.revoke_api_key(req.context.session, req.context.actor, account_id, key_id)
        resp.status = falcon.HTTP_204
