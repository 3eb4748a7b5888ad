"""Moving what is sealed at rest to the current secret key after a rotation.

Rotating ``PROVISIONING_SECRET_KEY``: set the new key and list the old one in
``PROVISIONING_PREVIOUS_SECRET_KEYS``; everything sealed or linked with the old key keeps
working. ``reseal`` then re-encrypts the TOTP secrets and the browsers' push keys with the
new key. Recovery codes are keyed hashes that cannot be moved: they work while the key they
were made with is listed, and a person who turns two-factor sign-in off and on gets fresh
ones. Links in emails already sent work while their key is listed (7 days covers every
invitation and email-change link).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update

from provisioning.access import codes
from provisioning.core import security
from provisioning.core.config import settings
from provisioning.core.db import session_scope
from provisioning.members.models import Identity
from provisioning.notifications import devices
from provisioning.notifications.models import PushDevice

# Each sealed column: its table's id, the column, and what its key was derived for.
SEALED: tuple[tuple[Any, Any, str], ...] = (
    (Identity.id, Identity.totp_secret, codes.SEALED_FOR),
    (PushDevice.id, PushDevice.sealed_keys, devices.SEALED_FOR),
)


def reseal(*, chunk: int = 1_000) -> dict[str, int]:
    """Re-encrypt, with the current key, every sealed value that only a previous key opens;
    returns how many values of each column moved and how many no listed key opens."""
    current = settings().secret_key
    keys = settings().secret_keys
    report: dict[str, int] = {}
    for id_column, column, purpose in SEALED:
        moved = unreadable = 0
        after = 0
        while True:
            with session_scope() as session:
                rows = session.execute(select(id_column, column).where(
                    column.is_not(None), id_column > after).order_by(id_column).limit(chunk)
                ).all()
                for row_id, sealed in rows:
                    opened = security.open_sealed(keys, purpose, sealed)
                    if opened is None:
                        unreadable += 1
                    elif opened[1] > 0:  # only a previous key opens it
                        session.execute(update(id_column.table).where(id_column == row_id)
                                        .values({column.key: security.seal(current, purpose,
                                                                           opened[0])}))
                        moved += 1
            if len(rows) < chunk:
                break
            after = rows[-1][0]
        name = f"{column.table.name}.{column.key}"
        report[name] = moved
        report[f"{name} (no key opens)"] = unreadable
    return report
