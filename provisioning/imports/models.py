"""An import's stored file, staged rows and parts."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Date,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from provisioning.core.db import Base
from provisioning.core.models import Id, JSONType, UTCDateTime


class JobFile(Base):
    """An uploaded file, normalised to UTF-8, in parts: every worker machine can read it."""

    __tablename__ = "job_files"

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"),
                                        primary_key=True)
    part: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class ImportRow(Base):
    """A checked row of an import file: the snapshot a dry run shows and a commit applies."""

    __tablename__ = "import_rows"
    # First wins: a second row with the same email cannot be staged.
    __table_args__ = (UniqueConstraint("job_id", "email", name="uq_import_rows_email"),)

    # The job's scratch, purged with it (jobs.purge): no foreign key checked per staged row.
    job_id: Mapped[int] = mapped_column(Id, primary_key=True)
    line: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str | None] = mapped_column(String(200))
    role: Mapped[str | None] = mapped_column(String(100))
    group: Mapped[str | None] = mapped_column(String(100))
    user_type: Mapped[str] = mapped_column(String(16))
    language: Mapped[str | None] = mapped_column(String(8))
    phone: Mapped[str | None] = mapped_column(String(40))
    seasonal_start: Mapped[date | None] = mapped_column(Date)
    seasonal_end: Mapped[date | None] = mapped_column(Date)
    outcome: Mapped[str | None] = mapped_column(String(16))  # create|update|unchanged|error
    # A new member's existing identity, as planned (the part's writer checks it again).
    identity_id: Mapped[int | None] = mapped_column(BigInteger)


class ImportPart(Base):
    """A planned chunk of an import whose new members a worker still has to write.

    The planner decides every row in file order (first wins, seats in order) and
    leaves the writing of each chunk's new members to whichever worker takes the
    part first; the job is done when no part is left unwritten.
    """

    __tablename__ = "import_parts"

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"),
                                        primary_key=True)
    part: Mapped[int] = mapped_column(Integer, primary_key=True)
    first_line: Mapped[int] = mapped_column(Integer)
    last_line: Mapped[int] = mapped_column(Integer)
    rows: Mapped[int] = mapped_column(Integer)  # new members planned
    seats: Mapped[int] = mapped_column(Integer)  # seats they take, held until written
    written_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    written_by: Mapped[str | None] = mapped_column(String(100))  # host:pid of the worker
    # What writing it did (created, skipped, failed, invitations, seats_added). The job's
    # summary adds these up when read, so a writer never waits for the job row.
    counts: Mapped[dict[str, int] | None] = mapped_column(JSONType)
