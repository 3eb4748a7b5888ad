"""The invitee's landing page: the link in the invitation email opens it."""

from __future__ import annotations

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
        resp.content_type = falcon.MEDIA_HTML
        resp.text = _environment().get_template("invitation.html").render(
            preview=preview, token=token)
