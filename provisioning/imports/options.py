"""An import's options, outcomes and task names, shared by the API's side and the worker's."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from provisioning.core.errors import (
    FieldError,
    InvalidInput,
)

KIND = "import"
PART_TASK = "provisioning.write_import_part"
PLANNING, WRITING = "rows", "writing"  # the checkpoint's phases after the counting pass
PART_SIZE = 1 << 20  # bytes of the stored file per database row
READ_SIZE = 1 << 16
ON_EXISTING = ("skip", "update")
# Per-row outcomes (the dry run's report) and the summary counter each one feeds.
CREATE, UPDATE, UNCHANGED, ERROR = "create", "update", "unchanged", "error"
COUNTER = {CREATE: "created", UPDATE: "updated", UNCHANGED: "skipped", ERROR: "failed"}


@dataclass(frozen=True)
class ImportOptions:
    dry_run: bool = False
    on_existing: str = "skip"
    invite: bool = True

    @classmethod
    def parse(cls, params: Mapping[str, str | None]) -> ImportOptions:
        """Query parameters as given; every problem names its parameter."""
        errors: list[FieldError] = []

        def flag(name: str, default: bool) -> bool:
            raw = (params.get(name) or "").strip().lower()
            if not raw:
                return default
            if raw in ("true", "1", "yes", "on"):
                return True
            if raw in ("false", "0", "no", "off"):
                return False
            errors.append(FieldError(name, "Use true or false.", "invalid"))
            return default

        dry_run = flag("dry_run", False)
        invite = flag("invite", True)
        on_existing = (params.get("on_existing") or "skip").strip().lower()
        if on_existing not in ON_EXISTING:
            errors.append(FieldError("on_existing", "Use skip or update.", "invalid"))
        if errors:
            raise InvalidInput(errors)
        return cls(dry_run=dry_run, on_existing=on_existing, invite=invite)

    def as_params(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "on_existing": self.on_existing, "invite": self.invite}


def empty_summary() -> dict[str, int]:
    return {"created": 0, "updated": 0, "skipped": 0, "failed": 0, "invitations": 0,
            "seats_added": 0}
