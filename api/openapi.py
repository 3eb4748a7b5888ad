"""The route table's parts, and the OpenAPI 3.1 document served at /openapi.json built from it.

``api/routes.py`` lists every route as a ``Route``: its path, its resource and, per responder,
an ``Operation``. ``create_app`` adds exactly those routes and ``document`` describes exactly
those, so the URL map and its description cannot drift apart.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import falcon
from falcon.routing import map_http_methods

from api.schemas import SCHEMAS, ref

MEDIA_JSON = "application/json"
MEDIA_PROBLEM = "application/problem+json"
Schema = Mapping[str, Any]


@dataclass(frozen=True)
class Content:
    """A request or response body: its media type and the JSON schema of what it holds."""

    media: str
    schema: Schema


def json_body(name: str) -> Content:
    """A JSON body holding the component schema ``name``."""
    return Content(MEDIA_JSON, ref(name))


Body = Content | tuple[Content, ...]


@dataclass(frozen=True)
class Operation:
    """One responder as clients see it: what it takes, what it answers with each status."""

    summary: str
    responses: Mapping[int, Body | None]  # None: the status has no body (204)
    request: Body | None = None
    request_required: bool = True
    query: Mapping[str, Schema] = field(default_factory=dict)


@dataclass(frozen=True)
class Route:
    """A path, the resource that serves it, and an operation per responder (``on_get`` is
    ``get``; with a ``suffix``, ``on_get_<suffix>``)."""

    path: str  # as Falcon takes it, with converters: /v1/jobs/{job_id:int}
    resource: object
    operations: Mapping[str, Operation]
    suffix: str | None = None

    @property
    def auth(self) -> str:
        """What the authentication middleware asks of a caller: required, optional or none."""
        return str(getattr(self.resource, "auth", "required"))

    def responders(self) -> set[str]:
        """The methods the resource answers, as Falcon maps them."""
        return {method.lower() for method in map_http_methods(self.resource, suffix=self.suffix)}


def route(path: str, resource: object, *, suffix: str | None = None, **operations: Operation
          ) -> Route:
    """A table entry: ``route(path, resource, get=Operation(...), post=Operation(...))``."""
    return Route(path, resource, operations, suffix)


def add_routes(app: falcon.App, routes: Sequence[Route]) -> None:
    """Add every route; a responder the table does not describe (or the reverse) is refused."""
    for entry in routes:
        described = set(entry.operations)
        if described != entry.responders():
            raise ValueError(
                f"{entry.path}: responders {sorted(entry.responders())} "
                f"but the route table describes {sorted(described)}")
        if entry.suffix is None:
            app.add_route(entry.path, entry.resource)
        else:
            app.add_route(entry.path, entry.resource, suffix=entry.suffix)


_PARAMETER = re.compile(r"{(\w+)(?::(\w+)[^}]*)?}")
_CONVERTED = {"int": {"type": "integer", "minimum": 1},
              "uuid": {"type": "string", "format": "uuid"}}
_PROBLEM = {"$ref": "#/components/responses/Problem"}
# Who may call, as the authentication middleware reads the resource's ``auth``
_SECURITY: dict[str, list[dict[str, list[str]]] | None] = {
    "required": None,  # the document's default: a bearer token
    "none": [],
    "optional": [{}, {"bearer": []}],  # anonymous, or with a bearer token
}


def openapi_path(path: str) -> str:
    """/v1/jobs/{job_id:int} as OpenAPI spells it: /v1/jobs/{job_id}."""
    return _PARAMETER.sub(r"{\1}", path)


def _path_parameters(path: str) -> list[dict[str, Any]]:
    return [{"name": name, "in": "path", "required": True,
             "schema": _CONVERTED.get(converter, {"type": "string"})}
            for name, converter in _PARAMETER.findall(path)]


def _content(body: Body) -> dict[str, Any]:
    contents = body if isinstance(body, tuple) else (body,)
    return {content.media: {"schema": dict(content.schema)} for content in contents}


def _operation(entry: Route, method: str, operation: Operation) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status, body in sorted(operation.responses.items()):
        description = falcon.code_to_http_status(status).split(" ", 1)[1]
        responses[str(status)] = ({"description": description} if body is None else
                                  {"description": description, "content": _content(body)})
    responses.setdefault("4XX", _PROBLEM)
    responses.setdefault("5XX", _PROBLEM)
    described: dict[str, Any] = {"operationId": _operation_id(entry, method),
                                 "summary": operation.summary, "responses": responses}
    if operation.query:
        described["parameters"] = [{"name": name, "in": "query", "schema": dict(schema)}
                                   for name, schema in operation.query.items()]
    if operation.request is not None:
        described["requestBody"] = {"required": operation.request_required,
                                    "content": _content(operation.request)}
    security = _SECURITY[entry.auth]
    if security is not None:
        described["security"] = security
    return described


def _operation_id(entry: Route, method: str) -> str:
    words = re.findall(r"[a-z0-9]+", openapi_path(entry.path).replace("{", "by_"))
    return "_".join([method, *words])


def document(routes: Sequence[Route]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``routes``: paths, operations and the schemas they name."""
    paths: dict[str, Any] = {}
    for entry in routes:
        item = paths.setdefault(openapi_path(entry.path), {})
        parameters = _path_parameters(entry.path)
        if parameters:
            item["parameters"] = parameters
        for method, operation in entry.operations.items():
            item[method] = _operation(entry, method, operation)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Provisioner", "version": "0.1.0",
                 "description": "User management back end for SaaS workspaces."},
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {"Problem": {
                "description": "An RFC 9457 problem",
                "content": {MEDIA_PROBLEM: {"schema": ref("Problem")}}}},
            "schemas": SCHEMAS,
        },
    }
