"""kombu's Redis transport, with a channel that closes cleanly when Redis has gone away.

When Redis drops while the consumer waits on BRPOP, Celery collects the broken
connection: closing the channel first reads the pending BRPOP reply, which raises
the connection error before the channel is marked closed. Celery then closes the
connection a second time, after the transport has let go of its client, and the
channel's second attempt to restore unacknowledged messages looks up the broker's
host on ``None``. The AttributeError is not a connection error, so the worker exits
("Unrecoverable error") instead of reconnecting (the celery/kombu #582 family).

Here the lost BRPOP reply ends the poll and the close goes on in the first
attempt. A restore that cannot reach Redis then fails as the connection error it
is; those messages stay in Redis' unacked set, and kombu brings them back after
the visibility timeout. The outbox makes any such redelivery harmless.
"""

from __future__ import annotations

from queue import Empty

from kombu.transport import redis


class Channel(redis.Channel):
    def close(self) -> None:
        if self._in_poll:
            try:
                self._brpop_read()
            except (Empty, *self.connection_errors):
                pass  # the poll is over either way; _brpop_read has cleared it
        super().close()


class Transport(redis.Transport):
    Channel = Channel
