"""The tree shows where each rule lives: capability packages, and the domain never reaching out."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOMAIN = ROOT / "provisioning"
ENTRYPOINTS = ("api", "worker", "cli")
LONGEST_MODULE = 500


def _domain_modules() -> list[Path]:
    return [path for path in DOMAIN.rglob("*.py") if "migrations" not in path.parts]


def _imported(path: Path) -> set[str]:
    """Every module a file imports, at its top or inside a function."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            # ``from provisioning import members`` imports the package ``provisioning.members``
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_the_domain_imports_no_entrypoint() -> None:
    wrong = sorted(
        f"{path.relative_to(ROOT)} imports {name}"
        for path in _domain_modules()
        for name in _imported(path)
        if name.split(".")[0] in ENTRYPOINTS
    )
    assert wrong == []


def test_the_mail_package_knows_emails_not_invitations() -> None:
    # What an email is about (an invitation's token, its link) reaches mail/ through the
    # email's context; purge learns what to keep from the packages that read it.
    wrong = sorted(
        f"{path.relative_to(ROOT)} imports {name}"
        for path in (DOMAIN / "mail").rglob("*.py")
        for name in _imported(path)
        if name == "provisioning.members" or name.startswith("provisioning.members.")
    )
    assert wrong == []


def test_the_import_check_sees_an_import_inside_a_function(tmp_path: Path) -> None:
    module = tmp_path / "late.py"
    module.write_text("def send():\n    from worker.celery_app import send_task\n"
                      "from provisioning import members\n")
    assert {"worker.celery_app", "provisioning.members"} <= _imported(module)


def test_the_domain_is_capability_packages_only() -> None:
    top_level = sorted(path.name for path in DOMAIN.glob("*.py"))
    assert top_level == ["__init__.py"]


def test_no_domain_module_is_longer_than_the_limit() -> None:
    long = {str(path.relative_to(ROOT)): length for path in _domain_modules()
            if (length := len(path.read_text().splitlines())) > LONGEST_MODULE}
    assert long == {}


def _models_modules() -> list[str]:
    return sorted(f"provisioning.{path.parent.name}.models" for path in DOMAIN.glob("*/models.py"))


def test_every_package_with_tables_is_found_for_alembic() -> None:
    from provisioning.core.schema import import_every_model

    assert sorted(module.__name__ for module in import_every_model()) == _models_modules()


@pytest.mark.parametrize("module", _models_modules())
def test_each_package_s_tables_map_without_the_others_imported_first(module: str) -> None:
    # A process that imports one package first must still be able to query it.
    check = f"import {module}, sqlalchemy.orm; sqlalchemy.orm.configure_mappers()"
    run = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
