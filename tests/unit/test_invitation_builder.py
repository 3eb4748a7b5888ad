"""One builder makes every invitation: its token, hash, expiry and email (R3, R4).

No I/O: the builder's rows are rendered as the worker renders a claimed row, and the
link in the email is checked against the hash the database would keep.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email import policy
from email.parser import BytesParser
from types import SimpleNamespace

import pytest

from provisioning.core.config import settings
from provisioning.core.security import derived_token, hash_secret, invitation_token
from provisioning.mail import outbox
from provisioning.mail.delivery import render
from provisioning.mail.links import DERIVED_LINKS, derived_link, resolve_links
from provisioning.members.invitation_builder import (
    Addressee,
    Inviter,
    NewInvitation,
    new_invitation,
    new_invitations,
)

NOW = datetime(2027, 3, 1, 9, 30, tzinfo=UTC)
INVITER = Inviter(account_id=7, account_name="Acme", name="Ada Admin")
NEW_PERSON = Addressee("bo@example.test", "Bo", "pt-BR", existing_identity=False)
KNOWN_PERSON = Addressee("kim@example.test", "", "tr", existing_identity=True)
CONTEXT_KEYS = {"account_name", "inviter_name", "invitee_name", "email", "expires_at",
                DERIVED_LINKS}


def sent_form(invitation: NewInvitation) -> bytes:
    """The email as the worker sends it: the outbox's row for it, claimed and rendered."""
    (row,) = outbox.email_rows([invitation.email])
    claimed = SimpleNamespace(**dict(zip(outbox.EMAIL_COLUMNS, row, strict=True)), id=1,
                              claim_token="claim")
    return render(claimed, settings())  # type: ignore[arg-type]


def link_token(message: bytes) -> str:
    """The token of the one invitation link in the email, in both its parts."""
    parsed = BytesParser(policy=policy.default).parsebytes(message)
    base = re.escape(settings().public_url)
    tokens = {token for part in ("plain", "html")
              for token in re.findall(base + r"/invitations/([0-9a-f]+)",
                                      parsed.get_body(preferencelist=(part,)).get_content())}
    assert len(tokens) == 1, tokens
    return tokens.pop()


def test_the_link_in_the_sent_email_hashes_to_the_stored_token_hash() -> None:
    for invitation in new_invitations(INVITER, [NEW_PERSON, KNOWN_PERSON], NOW):
        assert hash_secret(link_token(sent_form(invitation))) == invitation.token_hash


def test_the_database_keeps_the_nonce_and_the_hash_never_the_token() -> None:
    invitation = new_invitation(INVITER, NEW_PERSON, NOW)
    token = invitation_token(settings().secret_key, invitation.token_nonce)
    assert invitation.token_hash == hash_secret(token)
    stored = repr((invitation.token_nonce, invitation.token_hash, invitation.email))
    assert token not in stored and len(invitation.token_nonce) >= 43  # 256 random bits


def test_one_person_and_a_batch_get_the_same_email_but_their_own_tokens() -> None:
    alone = new_invitation(INVITER, NEW_PERSON, NOW)
    batch = new_invitations(INVITER, [NEW_PERSON, KNOWN_PERSON, NEW_PERSON], NOW)
    for invitation in (alone, *batch):
        assert set(invitation.email["context"]) == CONTEXT_KEYS
        assert invitation.expires_at == NOW + timedelta(days=settings().invitation_ttl_days)
        assert invitation.email["context"]["expires_at"] == invitation.expires_at.isoformat()
        assert invitation.email["context"][DERIVED_LINKS] == {"link": derived_link(
            "/invitations/{token}", "invitation", invitation.token_nonce)}
    assert {**alone.email, "context": None} == {**batch[0].email, "context": None}
    assert len({invitation.token_nonce for invitation in (alone, *batch)}) == 4


def test_a_new_identity_and_an_existing_login_get_r3_s_two_emails() -> None:
    new, known = new_invitations(INVITER, [NEW_PERSON, KNOWN_PERSON], NOW)
    assert (new.email["template"], new.email["language"]) == ("invite_new", "pt-BR")
    assert (known.email["template"], known.email["language"]) == ("invite_existing", "tr")
    assert (new.email["recipient_name"], new.email["context"]["invitee_name"]) == ("Bo", "Bo")
    assert (known.email["recipient_name"], known.email["context"]["invitee_name"]) == (None, None)
    assert new.email["context"]["inviter_name"] == "Ada Admin"


def test_every_outbox_row_gets_its_own_message_id_by_one_recipe() -> None:
    single = outbox.new_email(**new_invitation(INVITER, NEW_PERSON, NOW).email)
    rows = outbox.email_rows([made.email for made in new_invitations(
        INVITER, [NEW_PERSON] * 3, NOW)])
    ids = [single["email_message_id"], *(row[outbox.EMAIL_COLUMNS.index("message_id")]
                                         for row in rows)]
    recipe = re.compile(r"<[0-9a-f]{24}@" + re.escape(settings().mail_domain) + r">\Z")
    assert all(recipe.match(message_id) for message_id in ids), ids
    assert len(set(ids)) == 4


def test_a_derived_link_is_made_from_the_secret_key_and_its_purpose() -> None:
    config = settings()
    context = {"name": "x", DERIVED_LINKS: {
        "confirm": derived_link("/confirm?t={token}", "email-change", "n1")}}
    resolve_links(context, config)
    assert context == {"name": "x", "confirm": config.public_url + "/confirm?t="
                       + derived_token(config.secret_key, "email-change", "n1")}
    assert derived_token(config.secret_key, "email-change", "n1") != invitation_token(
        config.secret_key, "n1")
    with pytest.raises(ValueError):
        derived_link("/confirm", "email-change", "n1")
