"""JSON schemas of what the API takes and answers: the components of /openapi.json.

Field names are the contract (SPEC §10); enumerations come from where the domain keeps them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from provisioning.access.policy import CATALOG
from provisioning.billing.plans import PERIODS, PLAN_NAMES
from provisioning.core.pages import MAX_PAGE
from provisioning.core.validation import LANGUAGES
from provisioning.crm.notes import MAX_TEXT_LENGTH
from provisioning.crm.records import KINDS, MAX_LABEL_LENGTH
from provisioning.imports.formats import COLUMNS
from provisioning.imports.options import ON_EXISTING
from provisioning.jobs.models import JobStatus
from provisioning.jobs.results import RESULT_STATUSES
from provisioning.members.bulk import ACTIONS
from provisioning.members.models import MemberStatus
from provisioning.members.rules import USER_TYPES
from provisioning.members.targets import RECORD_KINDS, TARGET_FIELDS
from provisioning.notifications.adapters import GATEWAY_PLATFORMS
from provisioning.notifications.catalog import CHANNELS, EMAIL_MODES, EVENTS
from provisioning.notifications.devices import DEVICE_CHANNELS


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(required: str, optional: str = "", **properties: Any) -> dict[str, Any]:
    """An object with ``properties``; ``required`` and ``optional`` name them, space-separated."""
    names = required.split() + optional.split()
    assert sorted(names) == sorted(properties), f"{names} != {sorted(properties)}"
    return {"type": "object", "required": required.split(), "properties": properties}


def _page(item: str, **extra: Any) -> dict[str, Any]:
    """A list page (SPEC §10): ``{"items": [...], "next_cursor": str|null}``."""
    return _object("items next_cursor", " ".join(extra),
                   items={"type": "array", "items": ref(item)},
                   next_cursor={"type": ["string", "null"]}, **extra)


def _switches(names: Iterable[str], *, every: bool) -> dict[str, Any]:
    """An object of on/off switches by name; ``every``: each one is always there."""
    return {"type": "object", "required": list(names) if every else [],
            "properties": dict.fromkeys(names, {"type": "boolean"})}


STRING = {"type": "string"}
TEXT_OR_NULL = {"type": ["string", "null"]}
INTEGER = {"type": "integer"}
ID = {"type": "integer", "minimum": 1}
BOOLEAN = {"type": "boolean"}
TIME = {"type": "string", "format": "date-time"}
TIME_OR_NULL = {"type": ["string", "null"], "format": "date-time"}
DATE = {"type": "string", "format": "date"}
DIGEST_TIME = {"type": "string", "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$"}
JSON_VALUE: dict[str, Any] = {}  # any JSON value

MEMBER_STATUSES = [status.value for status in MemberStatus]
JOB_STATUSES = [status.value for status in JobStatus]

# Query parameters
Parameters = dict[str, dict[str, Any]]
PAGE: Parameters = {"cursor": STRING,
                    "limit": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}}
MEMBER_FILTERS: Parameters = {
    "status": {"enum": MEMBER_STATUSES}, "q": STRING, "group": STRING, "role": STRING,
    "user_type": {"enum": list(USER_TYPES)}, "two_factor": BOOLEAN,
    "total": {"type": "boolean", "default": False}}
JOB_FILTERS: Parameters = {"status": {"enum": JOB_STATUSES}}
RECORD_FILTERS: Parameters = {"responsible_id": ID}
INBOX_FILTERS: Parameters = {"unread": {"type": "boolean", "default": False}}
ACCOUNT_JOB_FILTERS: Parameters = {"kind": STRING, "status": {"enum": JOB_STATUSES}}
RESULT_FILTERS: Parameters = {"status": {"enum": list(RESULT_STATUSES)}}
REASSIGN_TARGETS: Parameters = {name: ID for name in TARGET_FIELDS}
AUDIT_FILTERS: Parameters = {"actor": ID, "action": STRING, "target": STRING,
                             "since": TIME, "until": TIME}
IMPORT_OPTIONS: Parameters = {"dry_run": {"type": "boolean", "default": False},
                              "on_existing": {"enum": list(ON_EXISTING), "default": "skip"},
                              "invite": {"type": "boolean", "default": True}}


def _record_schemas() -> dict[str, Any]:
    """Each kind of owned record (SPEC §10): what it answers, takes, and its page."""
    schemas: dict[str, Any] = {}
    label = {"type": "string", "minLength": 1, "maxLength": MAX_LABEL_LENGTH}
    for kind in KINDS.values():
        name, times = kind.noun.capitalize(), " ".join(kind.times)
        moments: dict[str, Any] = {time: TIME_OR_NULL for time in kind.times}
        answer: dict[str, Any] = {"id": ID, kind.label: STRING, "responsible_id": ID,
                                  "created_at": TIME, "updated_at": TIME, **moments}
        schemas[name] = _object(" ".join(answer), **answer)
        schemas[f"{name}Page"] = _page(name)
        # responsible_id: a member of the account, active or invited, not free; the caller's
        # own membership when a new record leaves it out
        taken: dict[str, Any] = {kind.label: label, "responsible_id": ID, **moments}
        schemas[f"New{name}"] = _object(kind.label, f"responsible_id {times}", **taken)
        schemas[f"{name}Changes"] = _object("", f"{kind.label} responsible_id {times}", **taken)
    for name in ("Note", "Message"):
        schemas[name] = _object("id lead_id author_id author_name text created_at", id=ID,
                                lead_id=ID, author_id={"type": ["integer", "null"]},
                                author_name=STRING, text=STRING, created_at=TIME)
        schemas[f"{name}Page"] = _page(name)
        schemas[f"New{name}"] = _object("text", text={"type": "string", "minLength": 1,
                                                      "maxLength": MAX_TEXT_LENGTH})
    return schemas


INVITATION_STATES = ["not_sent", "queued", "sent", "deferred", "failed", "accepted",
                     "expired", "revoked"]

SCHEMAS: dict[str, Any] = {
    "Problem": _object(
        "type title status detail code errors",
        type=STRING, title=STRING, status=INTEGER, detail=STRING, code=STRING,
        errors={"type": "array", "items": _object("field message", "code", field=STRING,
                                                  message=STRING, code=STRING)}),
    "Health": _object("status", status={"const": "ok"}),
    "Readiness": _object("status checks", status={"enum": ["ok", "unavailable"]},
                         checks=_object("database broker", database=STRING, broker=STRING)),
    "OpenApiDocument": {"type": "object", "required": ["openapi", "paths"]},
    "Login": _object("email password", "totp_code", email=STRING, password=STRING,
                     totp_code=STRING),
    "Session": _object("token expires_at", token=STRING, expires_at=TIME_OR_NULL),
    "Me": _object("id email name phone language time_zone two_factor photo_url", id=ID,
                  email=STRING, name=STRING, phone=TEXT_OR_NULL,
                  language={"enum": list(LANGUAGES)}, time_zone=TEXT_OR_NULL,
                  two_factor=BOOLEAN, photo_url=TEXT_OR_NULL),
    "ProfileChange": _object("", "name phone language time_zone", name=STRING,
                             phone={**TEXT_OR_NULL, "description": "International form; "
                                    "stored as E.164"},
                             language={"enum": list(LANGUAGES)},
                             time_zone={**TEXT_OR_NULL, "description": "An IANA name"}),
    "PhotoSet": _object("photo_url", photo_url=STRING),
    "PasswordChange": _object("current_password new_password", current_password=STRING,
                              new_password=STRING),
    "EmailChange": _object("email password", email={"type": "string", "format": "email"},
                           password=STRING),
    "EmailChangeSent": _object("status detail", status={"const": "sent"}, detail=STRING),
    "EmailChangeConfirm": _object("token", token=STRING),
    "TwoFactorSetup": _object("secret otpauth_uri qr_svg", secret=STRING, otpauth_uri=STRING,
                              qr_svg=STRING),
    "TwoFactorCode": _object("code", code={"type": "string", "description":
                                           "A code from the authenticator or a recovery code"}),
    "RecoveryCodes": _object("recovery_codes", recovery_codes={
        "type": "array", "items": STRING, "minItems": 10, "maxItems": 10}),
    "NotificationSettings": _object(
        "enabled channels events email_mode digest_time time_zone telegram_chat_id",
        enabled=BOOLEAN, channels=_switches(CHANNELS, every=True),
        events=_switches(EVENTS, every=True),
        email_mode={"enum": list(EMAIL_MODES)}, digest_time=DIGEST_TIME,
        time_zone=STRING, telegram_chat_id=TEXT_OR_NULL),
    "NotificationSettingsChange": _object(
        "", "enabled channels events email_mode digest_time time_zone telegram_chat_id",
        enabled=BOOLEAN, channels=_switches(CHANNELS, every=False),
        events=_switches(EVENTS, every=False),
        email_mode={"enum": list(EMAIL_MODES)}, digest_time=DIGEST_TIME,
        time_zone={"type": "string", "description": "An IANA time zone, e.g. Asia/Jakarta"},
        telegram_chat_id=TEXT_OR_NULL),
    "InboxEntry": _object("id event text at read", id=ID, event={"enum": list(EVENTS)},
                          text=STRING, at=TIME, read=BOOLEAN),
    "InboxPage": _page("InboxEntry", unread=INTEGER),
    "InboxIds": _object("ids", ids={"type": "array", "items": ID, "minItems": 1,
                                    "maxItems": MAX_PAGE}),
    "InboxMarked": _object("marked", marked=INTEGER),
    "Device": _object("id channel platform created_at", id=ID,
                      channel={"enum": list(DEVICE_CHANNELS)},
                      platform={"enum": [*GATEWAY_PLATFORMS, "web"]}, created_at=TIME),
    "DevicePage": _page("Device"),
    "NewDevice": _object(
        "channel", "platform token subscription", channel={"enum": list(DEVICE_CHANNELS)},
        platform={"enum": list(GATEWAY_PLATFORMS), "description": "A phone's platform"},
        token={"type": "string", "description": "A phone's push token (APNs or FCM)"},
        subscription=_object("endpoint keys", endpoint=STRING, keys=_object(
            "p256dh auth", p256dh=STRING, auth=STRING))),
    "WebPushKey": _object("public_key", public_key={
        "type": "string", "description": "applicationServerKey for pushManager.subscribe"}),
    "ApiKey": _object("id name created_at expires_at created_by", id=ID, name=STRING,
                      created_at=TIME, expires_at=TIME_OR_NULL, created_by=STRING),
    "ApiKeyPage": _page("ApiKey"),
    "NewApiKey": _object("name", "expires_at",
                         name={"type": "string", "minLength": 1, "maxLength": 100},
                         expires_at=TIME),
    "IssuedApiKey": _object("id name token expires_at", id=ID, name=STRING, token=STRING,
                            expires_at=TIME_OR_NULL),
    "Invitation": _object("state expires_at last_sent_at sends", "failure",
                          state={"enum": INVITATION_STATES}, expires_at=TIME_OR_NULL,
                          last_sent_at=TIME_OR_NULL, sends=INTEGER, failure=TEXT_OR_NULL),
    "Member": _object(
        "id email name role group user_type language status two_factor invitation created_at",
        "note",
        id=ID, email=STRING, name=STRING, role=STRING, group=TEXT_OR_NULL,
        user_type={"enum": list(USER_TYPES)}, language={"enum": list(LANGUAGES)},
        status={"enum": MEMBER_STATUSES}, two_factor=BOOLEAN,
        invitation={"oneOf": [ref("Invitation"), {"type": "null"}]}, created_at=TIME,
        note={"type": ["string", "null"],
              "description": "Admins only (R12); absent from an answer to anyone else"}),
    "MemberPage": _page("Member", total=INTEGER),
    "Invite": _object(
        "email", "name role group user_type language initial_password seasonal_start "
                 "seasonal_end",
        email={"type": "string", "format": "email"}, name=STRING,
        role={"type": "string", "default": "member"}, group=STRING,
        user_type={"enum": list(USER_TYPES), "default": "full"},
        language={"enum": list(LANGUAGES)}, initial_password=STRING,
        seasonal_start=DATE, seasonal_end=DATE),
    "Role": _object("id name permissions builtin", id=ID, name=STRING,
                    permissions={"type": "array", "items": ref("PermissionName")},
                    builtin=BOOLEAN),
    "RolePage": _page("Role"),
    "NewRole": _object("name permissions", name=STRING,
                       permissions={"type": "array", "items": ref("PermissionName")}),
    "RoleChanges": _object("", "name permissions", name=STRING,
                           permissions={"type": "array", "items": ref("PermissionName")}),
    "PermissionName": {"enum": [permission.value for permission in CATALOG]},
    "Permission": _object("name description", name=ref("PermissionName"), description=STRING),
    "PermissionPage": _page("Permission"),
    "Group": _object("id name builtin", id=ID, name=STRING, builtin=BOOLEAN),
    "GroupPage": _page("Group"),
    "NewGroup": _object("name", name=STRING),
    "Participant": _object("user_id email name added_at", user_id=ID, email=STRING,
                           name=STRING, added_at=TIME),
    "ParticipantPage": _page("Participant"),
    "NewParticipant": _object("user_id", user_id=ID),
    "AuditEntry": _object("id actor_id actor action target_type target_id before after at",
                          id=ID, actor_id={"type": ["integer", "null"]},
                          actor=TEXT_OR_NULL, action=STRING, target_type=TEXT_OR_NULL,
                          target_id=TEXT_OR_NULL, before=JSON_VALUE,
                          after=JSON_VALUE, at=TIME),
    "AuditPage": _page("AuditEntry"),
    "JobSummary": {"oneOf": [ref("ImportSummary"), ref("BulkSummary"),
                             ref("ReassignmentSummary"), ref("BillingSummary")]},
    "BillingSummary": _object("accounts events", accounts=INTEGER, events=INTEGER),
    "Billing": _object(
        "plan period period_start period_end currency seats pending trial_ends_at",
        plan={"enum": list(PLAN_NAMES)}, period={"enum": list(PERIODS)}, period_start=TIME,
        period_end=TIME, currency=STRING,
        seats=_object("purchased used seasonal_used free_members unused", purchased=INTEGER,
                      used=INTEGER, seasonal_used=INTEGER, free_members=INTEGER,
                      unused=INTEGER),
        pending={"type": "array", "items": _object(
            "change effective_at", "seats plan", change={"enum": ["seats", "plan"]},
            effective_at=TIME, seats=INTEGER, plan={"enum": list(PLAN_NAMES)})},
        trial_ends_at=TIME_OR_NULL),
    "BillingChange": _object("", "seats plan", seats={"type": "integer", "minimum": 1},
                             plan={"enum": list(PLAN_NAMES[1:])}),
    "BillingEvent": _object("id kind quantity details period_start created_at", id=ID,
                            kind=STRING, quantity=INTEGER, details={"type": "object"},
                            period_start=TIME_OR_NULL, created_at=TIME),
    "BillingEventPage": _page("BillingEvent"),
    "SeatHolder": _object("user_id takes_seat reason", user_id=ID, takes_seat=BOOLEAN,
                          reason=STRING),
    "SeatHolderPage": _page("SeatHolder"),
    "BillingPreview": _object("charge_cents currency days_left", "seats_to_add",
                              charge_cents=INTEGER, currency=STRING, days_left=INTEGER,
                              seats_to_add=INTEGER),
    "ImportSummary": {**_object("created updated skipped failed", created=INTEGER,
                                updated=INTEGER, skipped=INTEGER, failed=INTEGER),
                      "additionalProperties": INTEGER},
    "BulkSummary": _object("succeeded failed", succeeded=INTEGER, failed=INTEGER),
    # Records moved so far, of each kind
    "ReassignmentSummary": _object(" ".join(RECORD_KINDS), "",
                                   **{kind: INTEGER for kind in RECORD_KINDS}),
    "Job": _object(
        "id kind status total done summary error errors_url created_at started_at "
        "finished_at elapsed_seconds rows_per_second",
        "options rows_url commit_url committed_as dry_run_job member_id removes targets "
        "action results_url",
        id=ID, kind=STRING, status={"enum": JOB_STATUSES},
        total={"type": ["integer", "null"]}, done=INTEGER, summary=ref("JobSummary"),
        error=TEXT_OR_NULL, errors_url=STRING, options={"type": "object"},
        created_at=TIME, started_at=TIME_OR_NULL, finished_at=TIME_OR_NULL,
        elapsed_seconds={"type": ["number", "null"]},
        rows_per_second={"type": ["number", "null"]}, rows_url=STRING, commit_url=STRING,
        committed_as={"type": ["integer", "null"]}, dry_run_job=ID,
        member_id=ID, removes=BOOLEAN,
        targets={"type": "object", "additionalProperties": ID}, action={"enum": list(ACTIONS)},
        results_url=STRING),
    "JobPage": _page("Job"),
    "QueuedJob": _object("job", job=ref("Job")),
    "QueuedMemberJob": _object("job member", job=ref("Job"), member=ref("Member")),
    "JobResult": _object("user_id status", "code message", user_id=ID,
                         status={"enum": list(RESULT_STATUSES)}, code=STRING, message=STRING),
    "JobResultPage": _page("JobResult"),
    "RecordCounts": _object(" ".join(RECORD_KINDS), "", **{kind: INTEGER for kind in RECORD_KINDS}),
    "Reassign": _object("", " ".join(TARGET_FIELDS), **{name: ID for name in TARGET_FIELDS}),
    "MemberChanges": _object("", "role group name note", role=STRING, group=TEXT_OR_NULL,
                             name=STRING, note=TEXT_OR_NULL),
    "BulkAction": _object(
        "action user_ids", "role group " + " ".join(TARGET_FIELDS),
        action={"enum": list(ACTIONS)},
        user_ids={"type": "array", "items": ID, "minItems": 1,
                  "description": "At most PROVISIONING_BULK_MAX_MEMBERS ids"},
        role=STRING, group=TEXT_OR_NULL, **{name: ID for name in TARGET_FIELDS}),
    "ImportRow": {**_object("email", " ".join(COLUMNS[1:]),
                            **{column: STRING for column in COLUMNS}),
                  "additionalProperties": True},
    "ImportUpload": _object("file", file={"type": "string", "contentMediaType":
                                          "application/octet-stream"}),
    "InvitationPreview": _object(
        "state account_name inviter_name email existing_identity expires_at",
        state={"enum": ["valid", "expired", "accepted", "revoked"]}, account_name=STRING,
        inviter_name=TEXT_OR_NULL, email=STRING, existing_identity=BOOLEAN, expires_at=TIME),
    "Accept": _object("", "password name", password=STRING, name=STRING),
    "RenewalSent": _object("status detail", status={"const": "sent"}, detail=STRING),
    **_record_schemas(),
}
