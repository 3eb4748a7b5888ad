"""The invitee's landing page: the link in the invitation email opens it."""

from __future__ import annotations

import secrets
from functools import lru_cache

import falcon
from jinja2 import Environment, FileSystemLoader, select_autoescape

from provisioning.core.config import REPO_ROOT
from provisioning.core.errors import NotFound
from provisioning.members.invitations import preview_invitation


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
        nonce = secrets.token_urlsafe(16)
        resp.content_type = falcon.MEDIA_HTML
        # The page holds the token in its URL: only its own script and style run, and it is
        # never framed (the other headers every answer gets: api.middleware.SecurityHeaders).
        resp.set_header("Content-Security-Policy", _policy(nonce))
        resp.text = _environment().get_template("invitation.html").render(
            preview=preview, token=token, nonce=nonce)


def _policy(nonce: str) -> str:
    return (f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
            "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'")
