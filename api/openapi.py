"""The OpenAPI 3.1 document served at /openapi.json."""

from __future__ import annotations

import re
from typing import Any

from provisioning.accounts.roles import PERMISSIONS
from provisioning.core.validation import LANGUAGES

PROBLEM = {"$ref": "#/components/responses/Problem"}


def _op(summary: str, *, status: str = "200", body: str | None = None, auth: bool = True,
        params: list[str] | None = None) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "responses": {status: {"description": "OK"}, "4XX": PROBLEM},
    }
    if body:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{body}"}}},
        }
    if params:
        operation["parameters"] = [{"name": p, "in": "query", "schema": {"type": "string"}}
                                   for p in params]
    if not auth:
        operation["security"] = []
    return operation


def _with_path_parameters(paths: dict[str, Any]) -> dict[str, Any]:
    """Declare every {name} in a path: ids are integers, tokens strings."""
    for path, operations in paths.items():
        names = re.findall(r"{(\w+)}", path)
        parameters = [{"name": name, "in": "path", "required": True,
                       "schema": {"type": "integer", "minimum": 1} if name.endswith("_id")
                       else {"type": "string"}} for name in names]
        if parameters:
            operations["parameters"] = parameters
    return paths


def document() -> dict[str, Any]:
    account = "/v1/accounts/{account_id}"
    member = account + "/users/{member_id}"
    return {
        "openapi": "3.1.0",
        "info": {"title": "Provisioner", "version": "0.1.0",
                 "description": "User management back end for SaaS workspaces."},
        "security": [{"bearer": []}],
        "paths": _with_path_parameters({
            "/healthz": {"get": _op("Liveness", auth=False)},
            "/readyz": {"get": _op("Database and broker reachable", auth=False)},
            "/v1/auth/login": {"post": _op("Log in", body="Login", auth=False)},
            "/v1/auth/logout": {"post": _op("Log out", status="204")},
            "/v1/me": {"get": _op("The caller")},
            account + "/api-keys": {"get": _op("List API keys"),
                                    "post": _op("Create an API key", status="201")},
            account + "/api-keys/{key_id}": {"delete": _op("Revoke an API key", status="204")},
            account + "/users": {
                "get": _op("List members", params=["status", "q", "group", "role", "user_type",
                                                    "two_factor", "cursor", "limit"]),
                "post": _op("Invite a member", status="201", body="Invite"),
            },
            member: {"get": _op("One member")},
            member + "/invitation": {"delete": _op("Revoke the invitation")},
            member + "/invitation/resend": {"post": _op("Resend the invitation")},
            account + "/roles": {"get": _op("Roles"),
                                 "post": _op("Create a custom role", status="201", body="Role")},
            account + "/groups": {"get": _op("Groups")},
            account + "/audit": {"get": _op("Audit log", params=["cursor", "limit"])},
            account + "/imports": {
                "get": _op("List imports, newest first", params=["status", "cursor", "limit"]),
                "post": _op("Import people from a CSV, JSON or NDJSON file", status="202",
                            params=["dry_run", "on_existing", "invite"]),
            },
            "/v1/jobs/{job_id}": {"get": _op("A job's status and progress")},
            "/v1/invitations/{token}": {"get": _op("Preview an invitation", auth=False)},
            "/v1/invitations/{token}/accept": {"post": _op("Accept", body="Accept", auth=False)},
            "/v1/invitations/{token}/renew": {
                "post": _op("Ask for a fresh link", status="202", auth=False)},
        }),
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {"Problem": {"description": "RFC 9457 problem",
                                      "content": {"application/problem+json": {
                                          "schema": {"$ref": "#/components/schemas/Problem"}}}}},
            "schemas": {
                "Problem": {"type": "object", "properties": {
                    "type": {"type": "string"}, "title": {"type": "string"},
                    "status": {"type": "integer"}, "detail": {"type": "string"},
                    "code": {"type": "string"},
                    "errors": {"type": "array", "items": {"type": "object", "properties": {
                        "field": {"type": "string"}, "message": {"type": "string"}}}}}},
                "Login": {"type": "object", "required": ["email", "password"], "properties": {
                    "email": {"type": "string"}, "password": {"type": "string"},
                    "totp_code": {"type": "string"}}},
                "Invite": {"type": "object", "required": ["email"], "properties": {
                    "email": {"type": "string", "format": "email"}, "name": {"type": "string"},
                    "role": {"type": "string", "default": "member"}, "group": {"type": "string"},
                    "user_type": {"enum": ["full", "free", "seasonal"], "default": "full"},
                    "language": {"enum": list(LANGUAGES)},
                    "initial_password": {"type": "string"},
                    "seasonal_start": {"type": "string", "format": "date"},
                    "seasonal_end": {"type": "string", "format": "date"}}},
                "Role": {"type": "object", "required": ["name", "permissions"], "properties": {
                    "name": {"type": "string"},
                    "permissions": {"type": "array", "items": {"enum": list(PERMISSIONS)}}}},
                "Accept": {"type": "object", "properties": {
                    "password": {"type": "string"}, "name": {"type": "string"}}},
            },
        },
    }
