"""The aiosmtpd handler: injected faults and delay, then hand-off to the writer."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

from aiosmtpd.smtp import SMTP, Envelope, Session

from mailsink.store import Delivery
from mailsink.writer import MessageWriter, StoreFailed, WriterStopped

REJECTED = "550 5.7.1 Message rejected by mailsink fault injection"
TEMPFAILED = "451 4.3.0 Temporary failure injected by mailsink"
STORE_FAILED = "451 4.3.0 mailsink could not store the message"
SHUTTING_DOWN = "421 4.3.2 mailsink is shutting down"


@dataclass
class FaultPlan:
    """Which share of messages to reject or temp-fail, and how long to wait first."""

    reject_rate: float
    tempfail_rate: float
    delay_seconds: float
    rng: random.Random

    def draw(self) -> str | None:
        """The error reply for the next message, or None to accept it."""
        if not (self.reject_rate or self.tempfail_rate):
            return None
        roll = self.rng.random()
        if roll < self.reject_rate:
            return REJECTED
        if roll < self.reject_rate + self.tempfail_rate:
            return TEMPFAILED
        return None


class SinkHandler:
    """Accepts every envelope; answers DATA once the message is committed."""

    def __init__(self, writer: MessageWriter, faults: FaultPlan) -> None:
        self._writer = writer
        self._faults = faults

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Store the message (or inject a fault) and answer the client."""
        if self._faults.delay_seconds:
            await asyncio.sleep(self._faults.delay_seconds)
        fault = self._faults.draw()
        if fault:
            return fault
        assert isinstance(envelope.content, bytes)  # decode_data is off
        delivery = Delivery(
            mail_from=envelope.mail_from or "",
            rcpt_tos=list(envelope.rcpt_tos),
            raw=envelope.content,
            received_at=time.time(),
        )
        try:
            message_id = await self._writer.submit(delivery)
        except WriterStopped:
            return SHUTTING_DOWN
        except StoreFailed:
            return STORE_FAILED  # the writer logged why; the client may retry later
        return f"250 2.0.0 Ok: stored as {message_id}"
