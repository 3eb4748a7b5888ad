"""The permission policy (R1, SPEC §10): a catalog, what each built-in role holds, and one check
that reads permissions, never a role's name."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import cast

import pytest
from sqlalchemy.orm import Session

from provisioning.access.auth import Actor
from provisioning.access.policy import (
    ADMIN_ROLE,
    BUILTIN_ROLES,
    CATALOG,
    MEMBER_ROLE,
    PARTICIPANT_PERMISSIONS,
    AdministeredAccount,
    Permission,
    Standing,
    granted,
    require,
    require_reach,
    role_permissions,
    unknown_permissions,
)
from provisioning.core.errors import Forbidden, NotFound

ROOT = Path(__file__).resolve().parents[2]
SPEC_PERMISSIONS = {"users.manage", "billing.view", "leads.view", "leads.edit", "leads.delete",
                    "tasks.view", "tasks.edit"}
ACCOUNT = AdministeredAccount(7, "Acme", "en", 0)
NO_SESSION = cast(Session, None)  # the standing rides on the actor: no query is made


def actor_with(stored: list[str] | None, *, status: str = "active", account_id: int = 7,
               key_for: int | None = None, user_type: str = "full") -> Actor:
    """An actor whose token lookup found this membership of account 7 (None: not a member)."""
    row = ((None,) * 8 if stored is None
           else (ACCOUNT.id, ACCOUNT.name, "en", 0, status, stored, 11, user_type))
    return Actor(1, "ann@example.com", "Ann", token_id=1, account_id=key_for,
                 standing=Standing.of(account_id, row))


def test_the_catalog_holds_the_spec_names_and_the_existing_ones_each_with_a_meaning():
    names = {permission.value for permission in CATALOG}
    assert SPEC_PERMISSIONS | {"contacts.view", "contacts.edit", "customers.view",
                               "customers.edit", "pipelines.view", "pipelines.edit",
                               "integrations.edit"} == names
    assert len(names) == len(CATALOG)
    assert all(permission.meaning.strip() for permission in CATALOG)


def test_the_admin_role_holds_every_permission_of_the_catalog():
    assert granted(BUILTIN_ROLES[ADMIN_ROLE]) == frozenset(CATALOG)
    assert role_permissions(BUILTIN_ROLES[ADMIN_ROLE]) == [p.value for p in CATALOG]
    admin = actor_with(BUILTIN_ROLES[ADMIN_ROLE])
    for permission in CATALOG:
        assert require(NO_SESSION, admin, 7, permission) == ACCOUNT


def test_the_member_role_does_not_manage_users_or_see_billing():
    held = granted(BUILTIN_ROLES[MEMBER_ROLE])
    assert Permission.LEADS_VIEW in held and Permission.TASKS_EDIT in held
    assert Permission.USERS_MANAGE not in held and Permission.BILLING_VIEW not in held


def test_a_custom_role_holds_what_it_stores_and_managing_users_shows_billing():
    assert granted(["leads.view"]) == {Permission.LEADS_VIEW}
    assert granted(["users.manage"]) == {Permission.USERS_MANAGE, Permission.BILLING_VIEW}
    assert granted(["billing.view"]) == {Permission.BILLING_VIEW}
    assert granted([]) == granted(None) == frozenset()
    assert granted(["leads.view", "retired.permission"]) == {Permission.LEADS_VIEW}


def test_only_catalog_names_may_be_given_to_a_role():
    assert unknown_permissions(["leads.view", "fly", "*"]) == ["*", "fly"]
    assert unknown_permissions([p.value for p in CATALOG]) == []


def test_a_custom_role_with_users_manage_passes_and_one_without_is_refused():
    assert require(NO_SESSION, actor_with(["users.manage"]), 7, Permission.USERS_MANAGE) == ACCOUNT
    with pytest.raises(Forbidden) as refused:
        require(NO_SESSION, actor_with(["leads.view"]), 7, Permission.USERS_MANAGE)
    assert refused.value.code == "admin_required"


def test_a_missing_permission_other_than_users_manage_is_named():
    with pytest.raises(Forbidden) as refused:
        require(NO_SESSION, actor_with(["leads.view"]), 7, Permission.LEADS_DELETE)
    assert refused.value.code == "permission_required"
    assert "leads.delete" in refused.value.detail


def test_another_account_is_not_found_and_an_inactive_member_is_refused():
    with pytest.raises(NotFound):
        require(NO_SESSION, actor_with(None), 7, Permission.USERS_MANAGE)
    with pytest.raises(NotFound):  # an API key of account 8, even for an admin of account 7
        require(NO_SESSION, actor_with(["*"], key_for=8), 7, Permission.USERS_MANAGE)
    inactive = actor_with(["*"], status="inactive")
    with pytest.raises(Forbidden) as refused:
        require(NO_SESSION, inactive, 7, Permission.USERS_MANAGE)
    assert refused.value.code == "forbidden"
    assert inactive.standing is not None and not inactive.standing.holds(Permission.LEADS_VIEW)


def test_a_standing_answers_whether_it_holds_a_permission():
    standing = actor_with(["leads.view"]).standing
    assert standing is not None
    assert standing.holds(Permission.LEADS_VIEW)
    assert not standing.holds(Permission.LEADS_EDIT)
    outsider = actor_with(None).standing
    assert outsider is not None and not outsider.holds(Permission.LEADS_VIEW)


def test_a_free_user_holds_nothing_account_wide_whatever_its_role_stores():
    free = actor_with(["*"], user_type="free")
    assert free.standing is not None and not free.standing.is_admin
    assert free.standing.permissions == frozenset()
    for permission in (Permission.USERS_MANAGE, Permission.LEADS_EDIT, Permission.TASKS_VIEW):
        with pytest.raises(Forbidden) as refused:
            require(NO_SESSION, free, 7, permission)
        assert refused.value.code == "free_user" and permission.value in refused.value.detail
    # R9: it views leads and customers, only those it takes part in, and writes messages.
    for permission in PARTICIPANT_PERMISSIONS:
        reach = require_reach(NO_SESSION, free, 7, permission)
        assert reach.participant_only and reach.member_id == 11
    assert require_reach(NO_SESSION, free, 7, Permission.LEADS_EDIT,
                         participant_may=True).participant_only
    full = require_reach(NO_SESSION, actor_with(["leads.view"]), 7, Permission.LEADS_VIEW)
    assert not full.participant_only


# No role name decides who may do what.

RETIRED_CHECK = "require_admin"
ADMIN_NAMES = {"ADMIN_ROLE"}


def _names_admin(node: ast.AST) -> bool:
    """``"admin"``, ``ADMIN_ROLE`` or ``x.ADMIN_ROLE``, alone or inside a tuple, list or set."""
    if isinstance(node, ast.Constant):
        return node.value == ADMIN_ROLE
    if isinstance(node, ast.Name):
        return node.id in ADMIN_NAMES
    if isinstance(node, ast.Attribute):
        return node.attr in ADMIN_NAMES
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return any(_names_admin(item) for item in node.elts)
    return False


def role_name_checks(source: str, where: str = "<source>") -> list[str]:
    """Each place ``source`` compares something to the admin role's name, or defines, imports
    or calls ``require_admin``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        line = f"{where}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Compare) and any(
                _names_admin(operand) for operand in [node.left, *node.comparators]):
            found.append(f"{line} compares to the admin role's name")
        elif isinstance(node, ast.FunctionDef) and node.name == RETIRED_CHECK:
            found.append(f"{line} defines {RETIRED_CHECK}")
        elif isinstance(node, ast.Name | ast.Attribute) and RETIRED_CHECK in (
                getattr(node, "id", None), getattr(node, "attr", None)):
            found.append(f"{line} uses {RETIRED_CHECK}")
        elif isinstance(node, ast.ImportFrom) and any(
                alias.name == RETIRED_CHECK for alias in node.names):
            found.append(f"{line} imports {RETIRED_CHECK}")
    return found


def test_no_module_decides_by_the_admin_role_s_name_or_keeps_require_admin():
    found = [check for package in ("api", "provisioning", "cli", "worker")
             for path in sorted((ROOT / package).rglob("*.py"))
             for check in role_name_checks(path.read_text(), str(path.relative_to(ROOT)))]
    assert found == []


@pytest.mark.parametrize("source", [
    'if standing.role != "admin":\n    raise Forbidden("no")\n',
    "query = select(Identity).where(Role.name == ADMIN_ROLE)\n",
    "allowed = role in (auth.ADMIN_ROLE, 'owner')\n",
    "from provisioning.access.auth import Actor, require_admin\n",
    "def require_admin(session, actor, account_id):\n    pass\n",
    "account = auth.require_admin(session, actor, account_id)\n",
])
def test_the_scan_finds_a_role_name_check_or_require_admin(source: str):
    assert role_name_checks(source) != []


@pytest.mark.parametrize("source", [
    'Role(account_id=1, name=ADMIN_ROLE, permissions=["*"])\n',
    'if permission not in standing.permissions:\n    raise Forbidden("no")\n',
    'label = "admin"\n',
])
def test_the_scan_lets_a_role_be_named_without_deciding_by_it(source: str):
    assert role_name_checks(source) == []
