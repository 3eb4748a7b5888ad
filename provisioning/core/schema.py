"""Every capability package keeps its tables in its own ``models`` module; this finds them all."""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

import provisioning


def import_every_model() -> list[ModuleType]:
    """Registers every package's tables with the one metadata (Alembic, ``create_all``)."""
    modules = []
    for package in pkgutil.iter_modules(provisioning.__path__):
        if not package.ispkg:
            continue
        try:
            modules.append(importlib.import_module(f"provisioning.{package.name}.models"))
        except ModuleNotFoundError as missing:
            if missing.name != f"provisioning.{package.name}.models":
                raise
    return modules
