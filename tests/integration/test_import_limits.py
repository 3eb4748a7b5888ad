"""Import limits (configurable): too large a file is refused at once, too many rows fail the
job with a sentence saying why, and nothing is imported."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Stack
from tests.support.imports import member_count, people_csv, run_import, upload

MAX_ROWS = 50
MAX_BYTES = 6000


@pytest.fixture(scope="module")
def stack(make_stack: Any) -> Stack:
    return make_stack(import_max_rows=str(MAX_ROWS), import_max_bytes=str(MAX_BYTES))


def test_more_rows_than_allowed_fail_the_job_and_import_nothing(stack: Stack):
    admin = stack.create_account()
    body, _ = people_csv(MAX_ROWS + 1)
    assert len(body) < MAX_BYTES
    done = run_import(stack, admin, body, invite="false")
    assert done["status"] == "failed"
    assert f"more than {MAX_ROWS} rows" in done["error"] and "Nothing was imported" in \
        done["error"]
    assert member_count(admin.id) == 1


def test_exactly_the_row_limit_imports(stack: Stack):
    admin = stack.create_account()
    body, _ = people_csv(MAX_ROWS)
    done = run_import(stack, admin, body, invite="false")
    assert done["status"] == "succeeded" and done["summary"]["created"] == MAX_ROWS


@pytest.mark.parametrize("multipart", [False, True], ids=["declared length", "streamed part"])
def test_a_file_over_the_size_limit_is_refused_with_413(stack: Stack, multipart: bool):
    admin = stack.create_account()
    body = b"email,name\n" + b"".join(b"x%d@example.com,%s\n" % (i, b"n" * 60)
                                     for i in range(200))
    assert len(body) > MAX_BYTES
    media = "text/csv"
    if multipart:
        body = (b'--B\r\nContent-Disposition: form-data; name="file"; filename="a.csv"\r\n\r\n'
                + body + b"\r\n--B--\r\n")
        media = "multipart/form-data; boundary=B"
    answer = upload(stack, admin, body, media=media)
    assert answer.status_code == 413, answer.json
    assert answer.json["errors"][0] == {"field": "file", "code": "too_large",
                                        "message": answer.json["errors"][0]["message"]}
    assert member_count(admin.id) == 1
