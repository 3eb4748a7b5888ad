"""The pages the links in emails open: the invitee's landing page and the confirmation of a
new login email. Each holds a token in its URL: only its own script and style run, it is
never framed, and it sends no referrer (``api.middleware.SecurityHeaders``)."""

from __future__ import annotations

import secrets
from functools import lru_cache

import falcon
from jinja2 import Environment, FileSystemLoader, select_autoescape

from provisioning.core.config import REPO_ROOT
from provisioning.core.errors import NotFound
from provisioning.members.invitations import preview_invitation
from provisioning.profile.email_change import preview_email_change


@lru_cache(maxsize=1)
def _environment() -> Environment:
    return Environment(loader=FileSystemLoader(REPO_ROOT / "templates" / "pages"),
                       autoescape=select_autoescape(["html"]))


class InvitationPage:
    auth = "none"

    def on_get(self, req: falcon.Request, resp: falcon.Response, token: str) -> None:
        try:
            preview = preview_invitation(req.context.session, token)
        except NotFound:
            preview = None
            resp.status = falcon.HTTP_404
        _render(resp, "invitation.html", preview=preview, token=token)


class EmailChangePage:
    """Where the link to a new login email leads: sign in, and the change is confirmed."""

    auth = "none"

    def on_get(self, req: falcon.Request, resp: falcon.Response, token: str) -> None:
        preview = preview_email_change(req.context.session, token)
        if preview is None:
            resp.status = falcon.HTTP_404
        _render(resp, "email_change.html", preview=preview, token=token)


def _render(resp: falcon.Response, template: str, **context: object) -> None:
    nonce = secrets.token_urlsafe(16)
    resp.content_type = falcon.MEDIA_HTML
    resp.set_header("Content-Security-Policy", _policy(nonce))
    resp.text = _environment().get_template(template).render(nonce=nonce, **context)


def _policy(nonce: str) -> str:
    return (f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
            "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'")
