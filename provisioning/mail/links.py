"""Links an email carries that are made when it is sent, from the server's secret key.

An outbox row keeps what such a link derives from (its path, a purpose and a nonce),
never its token: a copy of the database alone holds no working link. The sender
derives the token with the secret key and gives the template the whole link.
"""

from __future__ import annotations

from typing import Any

from provisioning.core.config import Settings
from provisioning.core.security import derived_token

DERIVED_LINKS = "derived_links"  # the context key: {template name: derived_link(…)}
TOKEN = "{token}"  # where a link's path takes its token


def derived_link(path: str, purpose: str, nonce: str) -> dict[str, str]:
    """A link as an email's context keeps it: ``PUBLIC_URL`` + ``path``, whose ``{token}``
    the sender fills with the token ``derived_token(secret key, purpose, nonce)``."""
    if TOKEN not in path:
        raise ValueError(f"a derived link's path needs {TOKEN}: {path!r}")
    return {"path": path, "purpose": purpose, "nonce": nonce}


def resolve_links(context: dict[str, Any], config: Settings) -> None:
    """Replace the context's derived links by the links themselves, each under its name."""
    for name, link in (context.pop(DERIVED_LINKS, None) or {}).items():
        token = derived_token(config.secret_key, link["purpose"], link["nonce"])
        context[name] = config.public_url + link["path"].replace(TOKEN, token)
