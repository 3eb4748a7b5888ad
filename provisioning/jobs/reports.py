"""A job's reports as CSV: streamed, and safe to open in a spreadsheet."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from sqlalchemy import Executable

from provisioning.core.db import session_scope

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: str) -> str:
    """A value for the error report that spreadsheets show as text, never run as a formula."""
    return "'" + value if value.startswith(_FORMULA_STARTS) else value


def csv_report(header: tuple[str, ...], query: Executable,
               shape: Callable[[Any], Sequence[Any]]) -> Iterator[bytes]:
    """Stream a query as CSV, a few hundred rows at a time, from a session of its own.

    The response body is sent after the request's session has closed, and a
    million-row report never sits in memory.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    yield buffer.getvalue().encode()
    with session_scope() as session:
        for partition in session.execute(query.execution_options(yield_per=2000)).partitions():
            buffer.seek(0)
            buffer.truncate()
            writer.writerows(shape(row) for row in partition)
            yield buffer.getvalue().encode()
