"""Roles, the permission catalogue and the guards around them."""

import pytest

from tests.support import RunningService, unique_name

CREATE_ROLE = """
mutation($input: CreateRoleInput!) {
  createRole(input: $input) { name permissions builtin }
}
"""
UPDATE_ROLE = """
mutation($name: String!, $input: UpdateRoleInput!) {
  updateRole(name: $name, input: $input) { name permissions }
}
"""
DELETE_ROLE = (
    "mutation($name: String!, $force: Boolean!) { deleteRole(name: $name, force: "
    "$force) }"
)
SET_ROLES = """
mutation($id: ID!, $roles: [String!]!) { setUserRoles(id: $id, roles: $roles) { id } }
"""
PREDICT = '{ predict(input: {penguins: {island: "Biscoe"}}) { label } }'


@pytest.fixture(scope="module")
def admin(service: RunningService) -> str:
    return service.login("admin")


def _admin_id(service: RunningService, admin: str) -> str:
    return service.execute("{ me { id } }", token=admin).data["me"]["id"]


def test_catalogue_lists_every_permission(service: RunningService, admin: str):
    result = service.execute("{ permissions { name description } }", token=admin)
    names = [p["name"] for p in result.data["permissions"]]
    assert names == sorted(names)
    assert {
        "predict:run",
        "predict:proba",
        "users:read",
        "users:write",
        "roles:read",
        "roles:write",
        "audit:read",
    } <= set(names)
    assert all(p["description"] for p in result.data["permissions"])


def test_builtin_roles_are_seeded(service: RunningService, admin: str):
    result = service.execute("{ roles { name builtin permissions } }", token=admin)
    roles = {r["name"]: r for r in result.data["roles"]}
    assert roles["analyst"]["permissions"] == [
        "predict:explain",
        "predict:proba",
        "predict:run",
    ]
    assert roles["viewer"]["permissions"] == ["predict:run"]
    assert roles["auditor"]["permissions"] == ["audit:read"]
    assert all(
        roles[name]["builtin"] for name in ("admin", "analyst", "viewer", "auditor")
    )


def test_role_permission_change_applies_on_next_request(
    service: RunningService, admin: str
):
    role = unique_name("predictors")
    created = service.execute(
        CREATE_ROLE,
        {"input": {"name": role, "permissions": ["predict:run"]}},
        token=admin,
    )
    assert created.errors == []
    _, username, _ = service.add_user([role])
    token = service.login(username)
    assert service.execute(PREDICT, token=token).errors == []

    updated = service.execute(
        UPDATE_ROLE, {"name": role, "input": {"permissions": []}}, token=admin
    )
    assert updated.data["updateRole"]["permissions"] == []
    # Tokens issued under the old grants stop at once; a new one has the new.
    assert service.execute(PREDICT, token=token).codes() == ["UNAUTHENTICATED"]
    fresh = service.login(username)
    assert service.execute(PREDICT, token=fresh).codes() == ["FORBIDDEN"]


def test_role_in_use_needs_force(service: RunningService, admin: str):
    role = unique_name("temp")
    service.execute(
        CREATE_ROLE,
        {"input": {"name": role, "permissions": ["predict:run"]}},
        token=admin,
    )
    user_id, username, _ = service.add_user([role])

    without_force = service.execute(
        DELETE_ROLE, {"name": role, "force": False}, token=admin
    )
    forced = service.execute(DELETE_ROLE, {"name": role, "force": True}, token=admin)

    assert without_force.codes() == ["CONFLICT"]
    assert forced.data == {"deleteRole": role}
    user = service.execute(
        "query($id: ID!) { user(id: $id) { roles { name } } }",
        {"id": user_id},
        token=admin,
    )
    assert user.data["user"]["roles"] == []


@pytest.mark.parametrize("role", ["admin", "analyst", "viewer", "auditor"])
def test_builtin_roles_cannot_be_deleted(service: RunningService, admin: str, role):
    result = service.execute(DELETE_ROLE, {"name": role, "force": True}, token=admin)
    assert result.codes() == ["CONFLICT"]


def test_builtin_roles_cannot_be_renamed(service: RunningService, admin: str):
    result = service.execute(
        UPDATE_ROLE, {"name": "viewer", "input": {"name": "watcher"}}, token=admin
    )
    assert result.codes() == ["CONFLICT"]


def test_admin_role_keeps_every_permission(service: RunningService, admin: str):
    result = service.execute(
        UPDATE_ROLE,
        {"name": "admin", "input": {"permissions": ["predict:run"]}},
        token=admin,
    )
    assert result.codes() == ["CONFLICT"]
    assert (
        "predict:proba"
        in service.execute("{ myPermissions }", token=admin).data["myPermissions"]
    )


@pytest.mark.parametrize(
    ("fields", "code", "field"),
    [
        pytest.param({"name": "Bad Name"}, "BAD_USER_INPUT", "name", id="invalid-name"),
        pytest.param({"name": "x"}, "BAD_USER_INPUT", "name", id="too-short"),
        pytest.param(
            {"permissions": ["predict:everything"]},
            "BAD_USER_INPUT",
            "permissions",
            id="unknown-permission",
        ),
        pytest.param({"name": "viewer"}, "CONFLICT", None, id="duplicate"),
    ],
)
def test_invalid_roles_are_rejected(
    service: RunningService, admin: str, fields, code, field
):
    payload = {"name": unique_name("role"), "permissions": [], **fields}
    result = service.execute(CREATE_ROLE, {"input": payload}, token=admin)
    assert result.codes() == [code]
    if field is not None:
        assert result.errors[0]["extensions"]["field"] == field


def test_missing_role_is_not_found(service: RunningService, admin: str):
    result = service.execute(
        DELETE_ROLE, {"name": "no-such-role", "force": False}, token=admin
    )
    assert result.codes() == ["NOT_FOUND"]


def test_last_admin_cannot_be_removed(service: RunningService, admin: str):
    admin_id = _admin_id(service, admin)
    others = service.execute(
        '{ users(filter: {role: "admin", isActive: true}) { totalCount } }', token=admin
    )
    assert others.data["users"]["totalCount"] == 1, "another admin exists"

    attempts = {
        "deactivate": service.execute(
            "mutation($id: ID!) { deactivateUser(id: $id) { id } }",
            {"id": admin_id},
            token=admin,
        ),
        "delete": service.execute(
            "mutation($id: ID!) { deleteUser(id: $id) }", {"id": admin_id}, token=admin
        ),
        "strip": service.execute(
            SET_ROLES, {"id": admin_id, "roles": ["viewer"]}, token=admin
        ),
        "update": service.execute(
            "mutation($id: ID!) { updateUser(id: $id, input: {isActive: false}) { "
            "id } }",
            {"id": admin_id},
            token=admin,
        ),
    }
    for name, result in attempts.items():
        assert result.codes() == ["CONFLICT"], name
    me = service.execute("{ me { isActive roles { name } } }", token=admin)
    assert me.data["me"] == {"isActive": True, "roles": [{"name": "admin"}]}


def test_admin_can_step_down_when_another_remains(service: RunningService, admin: str):
    deputy_id, deputy, _ = service.add_user(["admin"], prefix="deputy")
    deputy_token = service.login(deputy)
    try:
        stepped_down = service.execute(
            SET_ROLES, {"id": deputy_id, "roles": ["viewer"]}, token=deputy_token
        )
        assert stepped_down.errors == []
    finally:
        service.execute(SET_ROLES, {"id": deputy_id, "roles": []}, token=admin)
    assert service.execute("{ roles { name } }", token=deputy_token).codes() == [
        "UNAUTHENTICATED"
    ]
    assert service.execute(
        "{ roles { name } }", token=service.login(deputy)
    ).codes() == ["FORBIDDEN"]
