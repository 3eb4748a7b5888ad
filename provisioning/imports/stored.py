"""The uploaded file as the database keeps it, read back as a stream by any worker."""

from __future__ import annotations

import io
from typing import Any

from sqlalchemy import (
    select,
)

from provisioning.core.db import engine
from provisioning.imports.models import JobFile
from provisioning.imports.options import PART_SIZE, READ_SIZE


class StoredFile(io.RawIOBase):
    """The uploaded file, read back part by part from the database (seekable)."""

    def __init__(self, job_id: int, size: int) -> None:
        self.job_id = job_id
        self.size = size
        self.offset = 0
        self._part_index = -1
        self._part = b""

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.offset, io.SEEK_END: self.size}[whence]
        self.offset = max(0, base + offset)
        return self.offset

    def tell(self) -> int:
        return self.offset

    def readinto(self, buffer: Any) -> int:
        if self.offset >= self.size:
            return 0
        index, start = divmod(self.offset, PART_SIZE)
        if index != self._part_index:
            with engine().connect() as connection:
                self._part = connection.scalar(
                    select(JobFile.data).where(JobFile.job_id == self.job_id,
                                               JobFile.part == index)) or b""
            self._part_index = index
        piece = self._part[start:start + len(buffer)]
        buffer[:len(piece)] = piece
        self.offset += len(piece)
        return len(piece)


def open_stored_file(job_id: int, size: int) -> io.BufferedReader:
    return io.BufferedReader(StoredFile(job_id, size), buffer_size=READ_SIZE)
