"""No request body can take the API down: every body is capped in size (chunked too) and its
JSON in depth, and the caller is told which with a problem+json answer, never a 500.

The public routes are the ones anybody on the internet can reach, so each of them is tried,
as the route table lists them: a route added later is covered without touching this file.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from api.openapi import Operation
from api.routes import routes
from provisioning.core.config import settings
from tests.conftest import Stack
from tests.support.processes import free_port
from tests.support.servers import start_web

BODY_METHODS = ("post", "put", "patch", "delete")
CAP = 1024 * 1024  # PROVISIONING_MAX_BODY_BYTES's default; the stacks do not set it
DEPTH = 32  # PROVISIONING_MAX_JSON_DEPTH's default


def _public_operations() -> list[tuple[str, str, Operation]]:
    """(method, path, operation) of every responder a caller without a token may reach."""
    return [(method, entry.path, operation) for entry in routes() if entry.auth != "required"
            for method, operation in entry.operations.items() if method in BODY_METHODS]


PUBLIC = _public_operations()


def _filled(path: str) -> str:
    """A concrete URL for a route: ids for numbers, an unguessable token for the rest."""
    return re.sub(r"{(\w+)(:int)?[^}]*}",
                  lambda found: "1" if found.group(2) else secrets.token_urlsafe(32), path)


def _nested(depth: int) -> str:
    """A login whose ``email`` holds ``depth`` - 1 arrays: ``depth`` levels with the object."""
    return '{"email": ' + "[" * (depth - 1) + "]" * (depth - 1) + ', "password": "x"}'


def _problem(result: Any, status: int, code: str) -> dict[str, Any]:
    assert result.status_code == status, (result.status_code, result.text[:300])
    assert result.headers["content-type"].startswith("application/problem+json")
    problem: dict[str, Any] = result.json if not callable(result.json) else result.json()
    assert problem["status"] == status and problem["code"] == code, problem
    assert [error["field"] for error in problem["errors"]] == ["body"], problem
    assert "Traceback" not in result.text
    return problem


@pytest.fixture(scope="module")
def stack(make_stack: Any) -> Stack:
    return make_stack(worker=False)


def test_the_caps_are_the_documented_defaults(stack: Stack) -> None:
    assert (settings().max_body_bytes, settings().max_json_depth) == (CAP, DEPTH)


def test_the_route_table_has_public_routes_that_take_a_body() -> None:
    paths = {path for _, path, _ in PUBLIC}
    assert {"/v1/auth/login", "/v1/invitations/{token}/accept",
            "/v1/invitations/{token}/renew"} <= paths


ROUTES = pytest.mark.parametrize(("method", "path", "operation"), PUBLIC,
                                 ids=[f"{method.upper()} {path}" for method, path, _ in PUBLIC])
JSON = {"Content-Type": "application/json"}


@ROUTES
def test_a_public_route_refuses_a_body_over_the_cap(
        stack: Stack, method: str, path: str, operation: Operation) -> None:
    oversize = '{"email": "a@example.com", "password": "' + "x" * CAP + '"}'
    result = stack.api.simulate_request(method.upper(), _filled(path), body=oversize,
                                        headers=JSON)
    _problem(result, 413, "too_large")


@ROUTES
def test_a_public_route_refuses_json_nested_too_deep(
        stack: Stack, method: str, path: str, operation: Operation) -> None:
    for depth in (100_000, DEPTH + 1):  # past Python's recursion limit, and just over ours
        result = stack.api.simulate_request(method.upper(), _filled(path), body=_nested(depth),
                                            headers=JSON)
        if operation.request is not None:  # the route reads its body
            problem = _problem(result, 400, "too_deep")
            assert str(DEPTH) in problem["errors"][0]["message"]
        else:
            assert result.status_code < 500, result.text[:300]
            assert "Traceback" not in result.text


def test_json_at_the_depth_limit_is_read(stack: Stack) -> None:
    result = stack.api.simulate_post("/v1/auth/login", body=_nested(DEPTH),
                                     headers=JSON)
    assert result.status_code == 422, result.text  # read, and the email is not a string
    assert [error["field"] for error in result.json["errors"]] == ["email"]


def test_a_private_route_is_capped_before_the_caller_is_asked_who_it_is(stack: Stack) -> None:
    result = stack.api.simulate_post("/v1/accounts/1/users", body="x" * (CAP + 1),
                                     headers={"Content-Type": "application/json"})
    _problem(result, 413, "too_large")


def test_an_import_keeps_its_own_larger_limit(stack: Stack) -> None:
    admin = stack.create_account()
    rows = "".join(f"person{i:06d}.{'x' * 40}@example.com,Person {i}\n" for i in range(20_000))
    csv = ("email,name\n" + rows).encode()
    assert len(csv) > CAP
    result = stack.api.simulate_post(f"/v1/accounts/{admin.id}/imports?dry_run=true", body=csv,
                                     headers={**admin.headers, "Content-Type": "text/csv"})
    assert result.status_code == 202, result.text[:300]


@pytest.fixture(scope="module")
def web(stack: Stack) -> Iterator[str]:
    """gunicorn serving the API: the server that decodes chunked bodies."""
    port = free_port()
    server = start_web(stack.log_dir, stack.env, port, workers=1)
    yield f"http://127.0.0.1:{port}"
    server.stop()


def _chunked(body: bytes, size: int = 16 * 1024) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start:start + size]


def test_a_chunked_body_is_read_up_to_the_cap(web: str) -> None:
    over = b'{"email": "a@example.com", "password": "' + b"x" * CAP + b'"}'
    with httpx.Client(base_url=web, timeout=30) as client:
        refused = client.post("/v1/auth/login", content=_chunked(over),
                              headers={"Content-Type": "application/json"})
        assert "content-length" not in refused.request.headers
        _problem(refused, 413, "too_large")
        # A chunked body under the cap is read like any other: a wrong password, not no body.
        small = b'{"email": "nobody@example.com", "password": "wrong password"}'
        answered = client.post("/v1/auth/login", content=_chunked(small, 8),
                               headers={"Content-Type": "application/json"})
        assert answered.status_code == 401, answered.text
