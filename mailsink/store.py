"""The SQLite file that holds received messages.

One connection in the writer process adds messages in batches; every reader opens
its own short-lived connection, which WAL lets run beside the writer.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from mailsink.parsing import ParsedMessage

SCHEMA = """
-- AUTOINCREMENT: an id is never reused, even after "delete all".
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT UNIQUE,
    envelope_from TEXT NOT NULL,
    envelope_to TEXT NOT NULL,
    from_header TEXT NOT NULL,
    to_header TEXT NOT NULL,
    subject TEXT NOT NULL,
    date_header TEXT NOT NULL,
    headers TEXT NOT NULL,
    text_body TEXT,
    html_body TEXT,
    size INTEGER NOT NULL,
    delivery_count INTEGER NOT NULL DEFAULT 1,
    received_at TEXT NOT NULL,
    search_text TEXT NOT NULL,
    raw BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS recipients (
    address TEXT NOT NULL,
    message INTEGER NOT NULL,
    PRIMARY KEY (address, message)
) WITHOUT ROWID;
"""

# raw and search_text are last in the row and left out here, so listing never reads them.
_COLUMNS = (
    "id, message_id, envelope_from, envelope_to, from_header, to_header, subject,"
    " date_header, headers, text_body, html_body, size, delivery_count, received_at"
)


@dataclass(frozen=True)
class Delivery:
    """One message as the SMTP server received it."""

    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    received_at: float


@dataclass(frozen=True)
class StoredMessage:
    """One message as the API and the pages show it."""

    id: int
    message_id: str | None
    envelope_from: str
    envelope_to: list[str]
    from_header: str
    to_header: str
    subject: str
    date_header: str
    headers: list[list[str]]
    text: str | None
    html: str | None
    size: int
    delivery_count: int
    received_at: str

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> StoredMessage:
        return cls(
            id=row["id"],
            message_id=row["message_id"],
            envelope_from=row["envelope_from"],
            envelope_to=json.loads(row["envelope_to"]),
            from_header=row["from_header"],
            to_header=row["to_header"],
            subject=row["subject"],
            date_header=row["date_header"],
            headers=json.loads(row["headers"]),
            text=row["text_body"],
            html=row["html_body"],
            size=row["size"],
            delivery_count=row["delivery_count"],
            received_at=row["received_at"],
        )


@dataclass(frozen=True)
class SearchResult:
    """One page of a search, newest first, and how many messages match in all."""

    messages: list[StoredMessage]
    total: int
    next_cursor: str | None


def open_connection(path: Path) -> sqlite3.Connection:
    """A connection in WAL mode; NORMAL sync is enough for a development sink."""
    connection = sqlite3.connect(path, timeout=30.0, isolation_level=None)
    connection.row_factory = sqlite3.Row
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    return connection


class MessageStore:
    """Reads and writes the messages table of one SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def create_schema(self) -> None:
        """Create the parent folder, the file and the tables if they are missing."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(open_connection(self.path)) as connection:
            connection.executescript(SCHEMA)

    def add_batch(
        self, connection: sqlite3.Connection, batch: Sequence[tuple[Delivery, ParsedMessage]]
    ) -> list[int]:
        """Store a batch in one transaction; return each message's id, in order.

        A message whose Message-ID is already stored only raises that row's
        delivery count, and adds any new envelope recipients to it.
        """
        ids: list[int] = []
        connection.execute("BEGIN IMMEDIATE")
        try:
            for delivery, parsed in batch:
                ids.append(self._add(connection, delivery, parsed))
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        return ids

    def _add(
        self, connection: sqlite3.Connection, delivery: Delivery, parsed: ParsedMessage
    ) -> int:
        envelope_to = list(dict.fromkeys(delivery.rcpt_tos))
        addresses = dict.fromkeys(
            [address.lower() for address in envelope_to] + parsed.to_addresses
        )
        search_text = "\n".join(
            [
                parsed.subject,
                parsed.text or "",
                parsed.html or "",
                parsed.from_header,
                parsed.to_header,
                delivery.mail_from,
                *envelope_to,
            ]
        ).casefold()
        received_at = datetime.fromtimestamp(delivery.received_at, UTC).isoformat()
        row = connection.execute(
            "INSERT INTO messages (message_id, envelope_from, envelope_to, from_header,"
            " to_header, subject, date_header, headers, text_body, html_body, size,"
            " received_at, search_text, raw)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (message_id) DO UPDATE SET delivery_count = delivery_count + 1"
            " RETURNING id, delivery_count, envelope_to",
            (
                parsed.message_id,
                delivery.mail_from,
                json.dumps(envelope_to),
                parsed.from_header,
                parsed.to_header,
                parsed.subject,
                parsed.date_header,
                json.dumps(parsed.headers, ensure_ascii=False),
                parsed.text,
                parsed.html,
                len(delivery.raw),
                received_at,
                search_text,
                delivery.raw,
            ),
        ).fetchone()
        message_id: int = row["id"]
        if row["delivery_count"] > 1:
            self._add_envelope_recipients(connection, message_id, row["envelope_to"], envelope_to)
        connection.executemany(
            "INSERT OR IGNORE INTO recipients (address, message) VALUES (?, ?)",
            [(address, message_id) for address in addresses],
        )
        return message_id

    def _add_envelope_recipients(
        self,
        connection: sqlite3.Connection,
        message_id: int,
        stored_json: str,
        envelope_to: list[str],
    ) -> None:
        # A redelivery to someone new (a per-recipient resend) must be findable by them.
        stored: list[str] = json.loads(stored_json)
        new = [address for address in envelope_to if address not in stored]
        if new:
            connection.execute(
                "UPDATE messages SET envelope_to = ?, search_text = search_text || ? WHERE id = ?",
                (json.dumps(stored + new), "\n" + "\n".join(new).casefold(), message_id),
            )

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        with closing(open_connection(self.path)) as connection:
            yield connection

    def search(
        self, *, to: str | None, q: str | None, cursor: int | None, limit: int
    ) -> SearchResult:
        """Messages newest first, matching a whole recipient address and/or a text.

        ``cursor`` is the id of the last message of the previous page.
        """
        conditions: list[str] = []
        parameters: list[object] = []
        if to:
            conditions.append("id IN (SELECT message FROM recipients WHERE address = ?)")
            parameters.append(to.strip().lower())
        if q:
            conditions.append("instr(search_text, ?) > 0")
            parameters.append(q.casefold())
        where = " AND ".join(conditions) or "1"
        page_where = f"{where} AND id < ?" if cursor is not None else where
        page_parameters = [*parameters, cursor] if cursor is not None else parameters
        with self._connection() as connection:
            connection.execute("BEGIN")  # total and page from the same snapshot
            total = connection.execute(
                f"SELECT count(*) FROM messages WHERE {where}", parameters
            ).fetchone()[0]
            rows = connection.execute(
                f"SELECT {_COLUMNS} FROM messages WHERE {page_where} ORDER BY id DESC LIMIT ?",
                [*page_parameters, limit + 1],
            ).fetchall()
            connection.execute("COMMIT")
        messages = [StoredMessage.from_row(row) for row in rows[:limit]]
        next_cursor = str(messages[-1].id) if len(rows) > limit else None
        return SearchResult(messages=messages, total=total, next_cursor=next_cursor)

    def get(self, message_id: int) -> StoredMessage | None:
        """One message by its id, or None."""
        with self._connection() as connection:
            row = connection.execute(
                f"SELECT {_COLUMNS} FROM messages WHERE id = ?", (message_id,)
            ).fetchone()
        return StoredMessage.from_row(row) if row else None

    def raw(self, message_id: int) -> bytes | None:
        """The source of one message exactly as received, or None."""
        with self._connection() as connection:
            row = connection.execute(
                "SELECT raw FROM messages WHERE id = ?", (message_id,)
            ).fetchone()
        return bytes(row["raw"]) if row else None

    def delete_all(self) -> int:
        """Delete every message; return how many there were."""
        with self._connection() as connection:
            connection.execute("BEGIN IMMEDIATE")
            deleted = connection.execute("DELETE FROM messages").rowcount
            connection.execute("DELETE FROM recipients")
            connection.execute("COMMIT")
        return deleted
