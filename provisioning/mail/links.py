"""Links an email carries that are made when it is sent, from the server's secret key.

An outbox row keeps what such a link derives from (its path, a purpose, a nonce and the
id of the key it was made with), never its token: a copy of the database alone holds no
working link. The sender derives the token with that key (the current one, or one it
replaced: ``PROVISIONING_PREVIOUS_SECRET_KEYS``) and gives the template the whole link.
"""

from __future__ import annotations

import logging
from typing import Any

from provisioning.core.config import Settings, settings
from provisioning.core.security import derived_token, key_id

log = logging.getLogger(__name__)

DERIVED_LINKS = "derived_links"  # the context key: {template name: derived_link(…)}
TOKEN = "{token}"  # where a link's path takes its token


def derived_link(path: str, purpose: str, nonce: str) -> dict[str, str]:
    """A link as an email's context keeps it: ``PUBLIC_URL`` + ``path``, whose ``{token}``
    the sender fills with the token ``derived_token(secret key, purpose, nonce)``."""
    if TOKEN not in path:
        raise ValueError(f"a derived link's path needs {TOKEN}: {path!r}")
    return {"path": path, "purpose": purpose, "nonce": nonce,
            "key": key_id(settings().secret_key)}


def resolve_links(context: dict[str, Any], config: Settings) -> None:
    """Replace the context's derived links by the links themselves, each under its name."""
    keys = {key_id(key): key for key in reversed(config.secret_keys)}  # the current one wins
    for name, link in (context.pop(DERIVED_LINKS, None) or {}).items():
        secret_key = keys.get(link.get("key", ""), config.secret_key)
        if link.get("key") not in (None, *keys):
            log.warning("the link %r was made with a secret key this server no longer has; "
                        "it will not work (keep it in PROVISIONING_PREVIOUS_SECRET_KEYS until "
                        "its links expire)", name)
        token = derived_token(secret_key, link["purpose"], link["nonce"])
        context[name] = config.public_url + link["path"].replace(TOKEN, token)
