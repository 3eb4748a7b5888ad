"""Jobs and their error reports."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from provisioning.core.db import Base
from provisioning.core.models import Id, JSONType, StrEnum, UTCDateTime, utcnow


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Job(Base):
    """Slow work a worker does for an account; the row is the truth, the broker only its id."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_status", "status", "heartbeat_at"),
                      Index("ix_jobs_account", "account_id", "id"))

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED.value)
    total: Mapped[int | None] = mapped_column(Integer)
    done: Mapped[int] = mapped_column(Integer, default=0)
    summary: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    params: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    checkpoint: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("identities.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Renewed at every checkpoint: a running job whose heartbeat stops is resumed.
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class JobError(Base):
    """One problem with one row (or the file): a line of the error report."""

    __tablename__ = "job_errors"
    __table_args__ = (Index("ix_job_errors_job", "job_id", "line"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    line: Mapped[int | None] = mapped_column(Integer)
    column: Mapped[str] = mapped_column(String(32))
    code: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text)
    value: Mapped[str | None] = mapped_column(Text)
    # "check": found reading the file (a commit of a dry run keeps these);
    # "apply": found against the database (a commit checks again).
    stage: Mapped[str] = mapped_column(String(8), default="check")


class JobResult(Base):
    """What a job did with one item it was given (a member of a bulk action), in the order it
    was given; ``pending`` until the job's chunk that holds it commits."""

    __tablename__ = "job_results"
    __table_args__ = (Index("ix_job_results_job", "job_id", "status", "position"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    item_id: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    code: Mapped[str | None] = mapped_column(String(32))
    message: Mapped[str | None] = mapped_column(Text)
