"""What a request body may be: at most ``max_body_bytes`` long, chunked or not, and JSON nested
at most ``max_json_depth`` deep. Anyone can send a body to the public routes, so a body past
either limit is refused with a problem+json answer before it can cost memory or a stack."""

from __future__ import annotations

import io
import json
from typing import Any

import falcon

from provisioning.core.config import settings
from provisioning.core.errors import FieldError, PayloadTooLarge


class NestedTooDeep(ValueError):
    """A JSON body nests deeper than the limit (Falcon answers a ValueError as malformed)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"The JSON nests deeper than {limit} levels.")


class BodyLimit:
    """Refuses a body over the limit before reading it, or, without a Content-Length (chunked),
    after reading one byte past it. A resource whose body is a file (``takes_files``) reads it
    under the import's own limit; one with a ``body_limit`` (a photo) is capped at that."""

    def process_resource(self, req: falcon.Request, resp: falcon.Response, resource: Any,
                         params: dict[str, Any]) -> None:
        if resource is None or getattr(resource, "takes_files", False):
            return
        limit = getattr(resource, "body_limit", None) or settings().max_body_bytes
        length = req.content_length
        if length is None and req.get_header("Transfer-Encoding"):
            body = req.stream.read(limit + 1)
            length = len(body)
            if length <= limit:  # from here on a body with a length, the kind Falcon reads
                req.stream = req.env["wsgi.input"] = io.BytesIO(body)
                req.env["CONTENT_LENGTH"] = str(length)
        if length is not None and length > limit:
            size = _size(limit)
            raise PayloadTooLarge(f"The request body is larger than {size}.",
                                  errors=[FieldError("body", f"At most {size}.", "too_large")])


def _size(limit: int) -> str:
    megabytes = limit / (1024 * 1024)
    return f"{megabytes:g} MB" if megabytes >= 1 else f"{limit:,} bytes"


def json_loads(text: str) -> Any:
    """``json.loads`` for request bodies: a body nested past the limit is refused."""
    limit = settings().max_json_depth
    try:
        value = json.loads(text)
    except RecursionError:  # far past the limit: the parser ran out of stack first
        raise NestedTooDeep(limit) from None
    if _deeper_than(value, limit):
        raise NestedTooDeep(limit)
    return value


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether arrays and objects nest more than ``limit`` levels (the outermost is level 1)."""
    pending = [(value, 1)] if isinstance(value, dict | list) else []
    while pending:
        item, depth = pending.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        pending.extend((child, depth + 1) for child in children
                       if isinstance(child, dict | list))
    return False
