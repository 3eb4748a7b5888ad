"""The caller's own profile, password, login email, two-factor sign-in and photo."""

from __future__ import annotations

import falcon

from api.clients import client_of
from api.resources import body, int_param, shaped
from provisioning.core.config import settings
from provisioning.core.errors import FieldError
from provisioning.core.validation import Form
from provisioning.profile import details, email_change, password, photo, two_factor

PROFILE_FIELDS = ("name", "phone", "language", "time_zone")


class Me:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = shaped(details.read_profile(req.context.session, req.context.actor))

    def on_patch(self, req: falcon.Request, resp: falcon.Response) -> None:
        form = Form(body(req))
        unknown = sorted(set(form.body) - set(PROFILE_FIELDS))
        if unknown:
            form.errors.extend(FieldError(name, "This field cannot be changed here.",
                                          "unknown_field") for name in unknown)
        form.finish()
        changes = {name: form.body[name] for name in PROFILE_FIELDS if name in form.body}
        resp.media = shaped(details.update_profile(req.context.session, req.context.actor,
                                                   **changes))


class MyPassword:
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        form = Form(body(req))
        current = form.secret("current_password", required=True)
        new = form.secret("new_password", required=True)
        form.finish()
        password.change_password(req.context.session, req.context.actor, current, new,
                                  client=client_of(req))
        resp.status = falcon.HTTP_204


class MyEmail:
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        form = Form(body(req))
        email = form.email("email")
        secret = form.secret("password", required=True)
        form.finish()
        assert email is not None and secret is not None
        email_change.request_email_change(req.context.session, req.context.actor, email,
                                          secret, client=client_of(req))
        resp.status = falcon.HTTP_202
        resp.media = {"status": "sent", "detail": f"A confirmation link went to {email}; "
                      "the change takes effect once it is followed."}


class MyEmailConfirmation:
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        form = Form(body(req))
        token = form.text("token", required=True, max_length=200)
        form.finish()
        assert token is not None
        email_change.confirm_email_change(req.context.session, req.context.actor, token,
                                          client=client_of(req))
        resp.media = shaped(details.read_profile(req.context.session, req.context.actor))


class TwoFactorSetup:
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = shaped(two_factor.set_up_two_factor(
            req.context.session, req.context.actor, client=client_of(req)))


def _code(req: falcon.Request) -> str:
    form = Form(body(req))
    code = form.text("code", required=True, max_length=20)
    form.finish()
    assert code is not None
    return code


class TwoFactorEnable:
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        recovery_codes = two_factor.enable_two_factor(
            req.context.session, req.context.actor, _code(req), client=client_of(req))
        resp.media = {"recovery_codes": recovery_codes}


class TwoFactorDisable:
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        two_factor.disable_two_factor(req.context.session, req.context.actor, _code(req),
                                      client=client_of(req))
        resp.status = falcon.HTTP_204


class MyPhoto:
    @property
    def body_limit(self) -> int:
        """A photo may be larger than a JSON body (``api.bodies.BodyLimit`` reads this)."""
        return settings().photo_max_bytes

    def on_put(self, req: falcon.Request, resp: falcon.Response) -> None:
        upload = req.bounded_stream.read(self.body_limit + 1)
        url = photo.set_photo(req.context.session, req.context.actor, upload)
        resp.media = {"photo_url": url}

    def on_delete(self, req: falcon.Request, resp: falcon.Response) -> None:
        photo.remove_photo(req.context.session, req.context.actor)
        resp.status = falcon.HTTP_204


class IdentityPhoto:
    def on_get(self, req: falcon.Request, resp: falcon.Response, identity_id: int) -> None:
        found = photo.read_photo(req.context.session, req.context.actor, identity_id,
                                 int_param(req, "size"))
        etag = f'"{found.etag}"'
        # Cached by the caller's browser only, and asked again each time (a 304 is cheap).
        resp.set_header("Cache-Control", "private, no-cache")
        resp.set_header("ETag", etag)
        if etag in (req.get_header("If-None-Match") or ""):
            resp.status = falcon.HTTP_304
            return
        resp.content_type = found.media_type
        resp.data = found.data
