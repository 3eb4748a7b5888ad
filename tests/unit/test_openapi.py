"""/openapi.json is the route table read aloud: every route Falcon serves is in it, with what
it takes and answers, and nothing it does not serve."""

from __future__ import annotations

import inspect
import re
from typing import Any

import falcon
import falcon.testing
import pytest
from falcon.inspect import inspect_routes
from falcon.routing import map_http_methods

from api.app import create_app
from api.openapi import Operation, Route, add_routes, document, json_body, route
from api.routes import routes

OPERATION_KEYS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
# What a responder does when it reads a request body
READS_BODY = ("body(req)", "get_media(", "bounded_stream")


def _served(app: falcon.App) -> set[tuple[str, str]]:
    """(METHOD, path as OpenAPI spells it) for every responder Falcon routes to."""
    return {(method.method, re.sub(r"{(\w+):[^}]*}", r"{\1}", found.path))
            for found in inspect_routes(app) for method in found.methods if not method.internal}


def _documented(described: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in described["paths"].items()
            for method in item if method in OPERATION_KEYS}


def _operations(described: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method, path, operation) for path, item in described["paths"].items()
            for method, operation in item.items() if method in OPERATION_KEYS]


@pytest.fixture(scope="module")
def app() -> falcon.App:
    return create_app()


@pytest.fixture(scope="module")
def served_document(app: falcon.App) -> dict[str, Any]:
    result = falcon.testing.TestClient(app).simulate_get("/openapi.json")
    assert result.status_code == 200
    described: dict[str, Any] = result.json
    return described


def test_every_route_falcon_serves_is_documented_with_each_method(
        app: falcon.App, served_document: dict[str, Any]) -> None:
    assert _served(app) - _documented(served_document) == set()


def test_the_document_describes_nothing_falcon_does_not_serve(
        app: falcon.App, served_document: dict[str, Any]) -> None:
    assert _documented(served_document) - _served(app) == set()


def test_the_reports_commit_and_cancel_of_a_job_are_documented(
        served_document: dict[str, Any]) -> None:
    job = "/v1/jobs/{job_id}"
    one_import = "/v1/accounts/{account_id}/imports/{job_id}"
    assert {("GET", job + "/errors.csv"), ("GET", one_import + "/rows.csv"),
            ("POST", one_import + "/commit"), ("POST", job + "/cancel")
            } <= _documented(served_document)


def test_the_check_sees_a_route_added_around_the_table(served_document: dict[str, Any]) -> None:
    class Stray:
        def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
            resp.media = {}

    app = create_app()
    app.add_route("/v1/stray", Stray())
    assert _served(app) - _documented(served_document) == {("GET", "/v1/stray")}


def test_the_check_sees_an_operation_missing_from_the_document(
        app: falcon.App, served_document: dict[str, Any]) -> None:
    trimmed = {**served_document, "paths": dict(served_document["paths"])}
    del trimmed["paths"]["/v1/accounts/{account_id}/imports/{job_id}/commit"]
    assert _served(app) - _documented(trimmed) == {
        ("POST", "/v1/accounts/{account_id}/imports/{job_id}/commit")}


class _Reports:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {}

    def on_delete(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.status = falcon.HTTP_204

    def on_get_csv(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.text = ""


def test_a_responder_the_table_does_not_describe_is_refused() -> None:
    undescribed = route("/v1/reports", _Reports(), get=Operation("Reports", {200: None}))
    with pytest.raises(ValueError, match="delete"):
        add_routes(falcon.App(), [undescribed])


def test_an_operation_without_its_responder_is_refused() -> None:
    phantom = route("/v1/reports.csv", _Reports(), suffix="csv",
                    get=Operation("Reports as CSV", {200: None}),
                    post=Operation("Nothing answers this", {200: None}))
    with pytest.raises(ValueError, match="post"):
        add_routes(falcon.App(), [phantom])


def test_suffixed_responders_are_routed_and_documented_by_their_method() -> None:
    table: list[Route] = [
        route("/v1/reports", _Reports(), get=Operation("Reports", {200: json_body("Job")}),
              delete=Operation("Clear the reports", {204: None})),
        route("/v1/reports.csv", _Reports(), suffix="csv",
              get=Operation("Reports as CSV", {200: json_body("Job")})),
    ]
    app = falcon.App()
    add_routes(app, table)
    assert _served(app) == _documented(document(table)) == {
        ("GET", "/v1/reports"), ("DELETE", "/v1/reports"), ("GET", "/v1/reports.csv")}


def test_every_operation_says_what_it_answers(served_document: dict[str, Any]) -> None:
    missing = [f"{method} {path}" for method, path, operation in _operations(served_document)
               if not any(status.startswith("2") and ("content" in answer or status == "204")
                          for status, answer in operation["responses"].items())]
    assert missing == []


def test_every_responder_that_reads_a_body_documents_its_schema() -> None:
    missing = []
    for entry in routes():
        responders = map_http_methods(entry.resource, suffix=entry.suffix)
        for method, operation in entry.operations.items():
            source = inspect.getsource(responders[method.upper()])
            if any(sign in source for sign in READS_BODY) and operation.request is None:
                missing.append(f"{method} {entry.path}")
    assert missing == []


def test_json_request_bodies_name_a_schema(served_document: dict[str, Any]) -> None:
    for method, path, operation in _operations(served_document):
        if method in ("post", "put", "patch") and "requestBody" in operation:
            for media, content in operation["requestBody"]["content"].items():
                assert content.get("schema"), f"{method} {path} {media}"


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def _resolve(described: dict[str, Any], pointer: str) -> Any:
    assert pointer.startswith("#/"), pointer
    node: Any = described
    for part in pointer[2:].split("/"):
        node = node[part]
    return node


def test_the_document_is_openapi_3_1_and_every_reference_resolves(
        served_document: dict[str, Any]) -> None:
    assert served_document["openapi"] == "3.1.0"
    assert {"title", "version"} <= set(served_document["info"])
    refs = _refs(served_document)
    assert refs
    for pointer in refs:
        _resolve(served_document, pointer)  # a KeyError names the broken reference
    schemes = served_document["components"]["securitySchemes"]
    for _method, _path, operation in _operations(served_document):
        for requirement in operation.get("security", served_document["security"]):
            assert set(requirement) <= set(schemes)


def test_every_path_parameter_is_declared_and_operation_ids_are_unique(
        served_document: dict[str, Any]) -> None:
    for path, item in served_document["paths"].items():
        declared = {parameter["name"] for parameter in item.get("parameters", [])
                    if parameter["in"] == "path"}
        assert declared == set(re.findall(r"{(\w+)}", path)), path
    ids = [operation["operationId"] for _m, _p, operation in _operations(served_document)]
    assert len(ids) == len(set(ids))


def test_who_may_call_follows_what_the_middleware_asks(served_document: dict[str, Any]) -> None:
    paths = served_document["paths"]
    assert paths["/v1/auth/login"]["post"]["security"] == []
    assert paths["/v1/invitations/{token}/accept"]["post"]["security"] == [{}, {"bearer": []}]
    assert "security" not in paths["/v1/accounts/{account_id}/users"]["get"]  # bearer, the default
    assert served_document["security"] == [{"bearer": []}]


def test_lists_are_pages_of_items_and_a_next_cursor(served_document: dict[str, Any]) -> None:
    schemas = served_document["components"]["schemas"]
    for name in ("MemberPage", "ApiKeyPage", "RolePage", "GroupPage", "AuditPage", "JobPage"):
        assert {"items", "next_cursor"} <= set(schemas[name]["required"]), name
    assert {"id", "email", "name", "role", "group", "user_type", "language", "status",
            "two_factor"} <= set(schemas["Member"]["required"])
    assert {"id", "kind", "status", "total", "done", "summary", "errors_url", "error"} <= set(
        schemas["Job"]["required"])
    assert set(schemas["Problem"]["required"]) >= {"type", "title", "status", "detail", "errors"}


def test_the_participants_of_a_record_are_paged_like_every_other_list(
        served_document: dict[str, Any]) -> None:
    for kind in ("leads", "customers"):
        listed = served_document["paths"][
            f"/v1/accounts/{{account_id}}/{kind}/{{record_id}}/participants"]["get"]
        assert {parameter["name"] for parameter in listed["parameters"]} == {"cursor", "limit"}
        assert listed["responses"]["200"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ParticipantPage"}
