"""Attacks on the field rules: escalation, self-service abuse and data leaks."""

import pytest

from tests.support import RunningService, strong_password, unique_name

SET_ROLES = """
mutation($id: ID!, $roles: [String!]!) { setUserRoles(id: $id, roles: $roles) { id } }
"""


@pytest.fixture(scope="module")
def admin(service: RunningService) -> str:
    return service.login("admin")


@pytest.fixture(scope="module")
def user_manager(service: RunningService, admin: str) -> tuple[str, str]:
    """A user with users:write and roles:read and no other permission."""
    role = unique_name("usermgr")
    created = service.execute(
        "mutation($n: String!) { createRole(input: {name: $n, "
        'permissions: ["users:write", "roles:read"]}) { name } }',
        {"n": role},
        token=admin,
    )
    assert created.errors == []
    user_id, username, _ = service.add_user([role], prefix="manager")
    return user_id, service.login(username)


def _roles_of(service: RunningService, admin: str, user_id: str) -> list[str]:
    result = service.execute(
        "query($id: ID!) { user(id: $id) { roles { name } } }",
        {"id": user_id},
        token=admin,
    )
    return [role["name"] for role in result.data["user"]["roles"]]


def test_viewer_cannot_set_own_roles(service: RunningService, admin: str):
    user_id, username, _ = service.add_user(["viewer"])
    token = service.login(username)

    through_set_roles = service.execute(
        SET_ROLES, {"id": user_id, "roles": ["admin"]}, token=token
    )
    through_update_me = service.execute(
        'mutation { updateMe(input: {roles: ["admin"]}) { id } }', token=token
    )
    through_update_me_vars = service.execute(
        "mutation($i: UpdateMeInput!) { updateMe(input: $i) { id } }",
        {"i": {"roles": ["admin"], "isActive": True}},
        token=token,
    )
    through_update_user = service.execute(
        'mutation($id: ID!) { updateUser(id: $id, input: {displayName: "x"}) { id } }',
        {"id": user_id},
        token=token,
    )

    assert through_set_roles.codes() == ["FORBIDDEN"]
    assert through_update_me.codes() == ["BAD_USER_INPUT"], through_update_me.errors
    assert set(through_update_me_vars.codes()) == {"BAD_USER_INPUT"}
    assert through_update_user.codes() == ["FORBIDDEN"]
    assert _roles_of(service, admin, user_id) == ["viewer"]


def test_manager_cannot_grant_what_it_lacks(
    service: RunningService, admin: str, user_manager
):
    manager_id, token = user_manager
    target_id, _, _ = service.add_user(["viewer"])

    escalate_self = service.execute(
        SET_ROLES, {"id": manager_id, "roles": ["admin"]}, token=token
    )
    grant_other = service.execute(
        SET_ROLES, {"id": target_id, "roles": ["auditor"]}, token=token
    )
    create_with_role = service.execute(
        "mutation($i: CreateUserInput!) { createUser(input: $i) { id } }",
        {
            "i": {
                "username": unique_name("sneaky"),
                "password": strong_password(),
                "roles": ["analyst"],
            }
        },
        token=token,
    )

    assert escalate_self.codes() == ["FORBIDDEN"]
    assert grant_other.codes() == ["FORBIDDEN"]
    assert create_with_role.codes() == ["FORBIDDEN"]
    assert _roles_of(service, admin, target_id) == ["viewer"]
    assert (
        "predict:run"
        not in service.execute("{ myPermissions }", token=token).data["myPermissions"]
    )


def test_role_writer_cannot_grant_what_it_lacks(service: RunningService, admin: str):
    role = unique_name("rolemgr")
    service.execute(
        "mutation($n: String!) { createRole(input: {name: $n, permissions: "
        '["roles:write", "roles:read"]}) { name } }',
        {"n": role},
        token=admin,
    )
    _, username, _ = service.add_user([role])
    token = service.login(username)

    create = service.execute(
        'mutation { createRole(input: {name: "grab-audit", permissions: '
        '["audit:read"]}) { name } }',
        token=token,
    )
    widen_own = service.execute(
        "mutation($n: String!) { updateRole(name: $n, input: {permissions: "
        '["roles:write", "roles:read", "users:write"]}) { name } }',
        {"n": role},
        token=token,
    )
    widen_viewer = service.execute(
        'mutation { updateRole(name: "viewer", input: {permissions: '
        '["predict:run", "predict:proba"]}) { name } }',
        token=token,
    )

    assert create.codes() == ["FORBIDDEN"]
    assert widen_own.codes() == ["FORBIDDEN"]
    assert widen_viewer.codes() == ["FORBIDDEN"]
    roles = service.execute("{ roles { name permissions } }", token=admin).data["roles"]
    assert {r["name"]: r["permissions"] for r in roles}["viewer"] == ["predict:run"]


def test_other_users_email_is_hidden_on_every_path(
    service: RunningService, user_manager
):
    victim_email = f"{unique_name('victim')}@example.org"
    victim_id, _, _ = service.add_user([], email=victim_email)
    _, viewer, _ = service.add_user(["viewer"])
    viewer_token = service.login(viewer)
    _, manager_token = user_manager

    by_id = service.execute(
        "query($id: ID!) { user(id: $id) { email } }",
        {"id": victim_id},
        token=viewer_token,
    )
    by_list = service.execute("{ users { items { email } } }", token=viewer_token)
    by_search = service.execute(
        "query($s: String) { users(filter: {search: $s}) { totalCount } }",
        {"s": victim_email},
        token=viewer_token,
    )
    # users:write without users:read: the mutation runs, but the returned
    # object is someone else's, so its fields stay closed.
    through_mutation = service.execute(
        "mutation($id: ID!) { updateUser(id: $id, input: {}) { id email "
        "displayName } }",
        {"id": victim_id},
        token=manager_token,
    )

    for result in (by_id, by_list, by_search):
        assert result.codes() == ["FORBIDDEN"]
        assert victim_email not in str(result.data)
    assert set(through_mutation.codes()) == {"FORBIDDEN"}
    assert victim_email not in str(through_mutation.data)


def test_denial_does_not_reveal_existence(service: RunningService):
    existing_id, _, _ = service.add_user([])
    _, viewer, _ = service.add_user(["viewer"])
    token = service.login(viewer)
    query = "query($id: ID!) { user(id: $id) { username } }"

    existing = service.execute(query, {"id": existing_id}, token=token)
    missing = service.execute(query, {"id": "987654"}, token=token)

    assert existing.errors == missing.errors or (
        existing.codes() == missing.codes() == ["FORBIDDEN"]
        and existing.errors[0]["message"] == missing.errors[0]["message"]
    )


def test_own_email_is_visible(service: RunningService):
    email = f"{unique_name('own')}@example.org"
    _, username, _ = service.add_user(["viewer"], email=email)
    result = service.execute("{ me { email } }", token=service.login(username))
    assert result.data == {"me": {"email": email}}


def test_auditor_reads_audit_log_but_not_users(service: RunningService, tokens):
    audit = service.execute(
        "{ auditEvents(limit: 1) { totalCount } }", token=tokens["auditor"]
    )
    users = service.execute("{ users { totalCount } }", token=tokens["auditor"])
    viewer_audit = service.execute(
        "{ auditEvents { totalCount } }", token=tokens["viewer"]
    )
    anonymous = service.execute("{ auditEvents { totalCount } }")

    assert audit.errors == []
    assert audit.data["auditEvents"]["totalCount"] > 0
    assert users.codes() == ["FORBIDDEN"]
    assert viewer_audit.codes() == ["FORBIDDEN"]
    assert anonymous.codes() == ["UNAUTHENTICATED"]


# Every management operation, with variables that would succeed for an admin.
OPERATIONS = {
    "users": ("{ users { totalCount } }", {}, "users:read"),
    "user": ('{ user(id: "1") { username } }', {}, "users:read"),
    "createUser": (
        "mutation($i: CreateUserInput!) { createUser(input: $i) { id } }",
        {"i": {"username": "never-created", "password": "Zq8-never-used-pw"}},
        "users:write",
    ),
    "updateUser": (
        'mutation { updateUser(id: "1", input: {displayName: "x"}) { id } }',
        {},
        "users:write",
    ),
    "deactivateUser": (
        'mutation { deactivateUser(id: "1") { id } }',
        {},
        "users:write",
    ),
    "reactivateUser": (
        'mutation { reactivateUser(id: "1") { id } }',
        {},
        "users:write",
    ),
    "deleteUser": ('mutation { deleteUser(id: "1") }', {}, "users:write"),
    "setUserRoles": (
        'mutation { setUserRoles(id: "1", roles: []) { id } }',
        {},
        "users:write",
    ),
    "resetUserPassword": (
        'mutation { resetUserPassword(id: "1") { temporaryPassword } }',
        {},
        "users:write",
    ),
    "roles": ("{ roles { name } }", {}, "roles:read"),
    "permissions": ("{ permissions { name } }", {}, "roles:read"),
    "createRole": (
        'mutation { createRole(input: {name: "never-made"}) { name } }',
        {},
        "roles:write",
    ),
    "updateRole": (
        'mutation { updateRole(name: "viewer", input: {description: "x"}) { name } }',
        {},
        "roles:write",
    ),
    "deleteRole": ('mutation { deleteRole(name: "viewer") }', {}, "roles:write"),
    "auditEvents": ("{ auditEvents { totalCount } }", {}, "audit:read"),
}
PERSONA_PERMISSIONS = {
    "analyst": {"predict:run", "predict:proba", "predict:explain"},
    "viewer": {"predict:run"},
    "auditor": {"audit:read"},
    "nobody": set(),
}


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
@pytest.mark.parametrize("persona", sorted(PERSONA_PERMISSIONS))
def test_operation_denied_without_permission(
    service: RunningService, tokens, persona, operation
):
    document, variables, permission = OPERATIONS[operation]
    if permission in PERSONA_PERMISSIONS[persona]:
        pytest.skip(f"{persona} holds {permission}")
    result = service.execute(document, variables, token=tokens[persona])
    assert result.codes() == ["FORBIDDEN"]
    assert result.errors[0]["extensions"]["requiredPermission"] == permission
    assert result.data is None or result.data.get(operation) is None


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_operation_unauthenticated_for_anonymous(service: RunningService, operation):
    document, variables, _ = OPERATIONS[operation]
    assert service.execute(document, variables).codes() == ["UNAUTHENTICATED"]


def test_deactivated_user_is_unauthenticated_everywhere(
    service: RunningService, admin: str
):
    user_id, username, _ = service.add_user(["admin"], prefix="former-admin")
    token = service.login(username)
    service.execute(
        "mutation($id: ID!) { deactivateUser(id: $id) { id } }",
        {"id": user_id},
        token=admin,
    )
    for operation, (document, variables, _) in OPERATIONS.items():
        codes = service.execute(document, variables, token=token).codes()
        assert codes == ["UNAUTHENTICATED"], operation


@pytest.mark.parametrize(
    "document",
    [
        "mutation($id: ID!) { resetUserPassword(id: $id) { temporaryPassword } }",
        'mutation($id: ID!) { updateUser(id: $id, input: {email: "x@evil.test"}) { '
        "id } }",
        "mutation($id: ID!) { deactivateUser(id: $id) { id } }",
        "mutation($id: ID!) { deleteUser(id: $id) }",
        "mutation($id: ID!) { setUserRoles(id: $id, roles: []) { id } }",
        "mutation($id: ID!) { revokeUserSessions(userId: $id) }",
        "mutation($id: ID!) { unlockUser(id: $id) { id } }",
    ],
)
def test_manager_cannot_act_on_more_privileged_users(
    service: RunningService, admin: str, user_manager, document
):
    _, manager_token = user_manager
    target_id, target, password = service.add_user(["analyst"], prefix="senior")

    result = service.execute(document, {"id": target_id}, token=manager_token)

    assert result.codes() == ["FORBIDDEN"]
    assert _roles_of(service, admin, target_id) == ["analyst"]
    assert service.login(target, password)


def test_manager_may_act_on_equal_users(
    service: RunningService, admin: str, user_manager
):
    _, manager_token = user_manager
    target_id, _, _ = service.add_user([], prefix="junior")
    result = service.execute(
        "mutation($id: ID!) { deactivateUser(id: $id) { id } }",
        {"id": target_id},
        token=manager_token,
    )
    # The change is made; only reading the returned user needs users:read.
    assert result.codes() == ["FORBIDDEN"]
    assert result.errors[0]["path"] == ["deactivateUser", "id"]
    check = service.execute(
        "query($id: ID!) { user(id: $id) { isActive } }", {"id": target_id}, token=admin
    )
    assert check.data == {"user": {"isActive": False}}


def test_role_writer_cannot_narrow_richer_roles(service: RunningService, admin: str):
    role = unique_name("rolewriter")
    service.execute(
        "mutation($n: String!) { createRole(input: {name: $n, permissions: "
        '["roles:write"]}) { name } }',
        {"n": role},
        token=admin,
    )
    _, username, _ = service.add_user([role])
    token = service.login(username)
    narrowed = service.execute(
        'mutation { updateRole(name: "auditor", input: {permissions: []}) { name } }',
        token=token,
    )
    described = service.execute(
        'mutation { updateRole(name: "admin", input: {description: "pwned"}) { '
        "name } }",
        token=token,
    )
    assert narrowed.codes() == ["FORBIDDEN"]
    assert described.codes() == ["FORBIDDEN"]
    roles = {
        r["name"]: r
        for r in service.execute(
            "{ roles { name description permissions } }", token=admin
        ).data["roles"]
    }
    assert roles["auditor"]["permissions"] == ["audit:read"]
    assert roles["admin"]["description"] != "pwned"


def test_pending_reset_allows_only_password_change(service: RunningService, admin: str):
    user_id, username, _ = service.add_user(["viewer"])
    temporary = service.execute(
        "mutation($id: ID!) { resetUserPassword(id: $id) { temporaryPassword } }",
        {"id": user_id},
        token=admin,
    ).data["resetUserPassword"]["temporaryPassword"]
    service.remember(temporary)
    token = service.login(username, temporary)

    update = service.execute(
        'mutation { updateMe(input: {email: "attacker@evil.test"}) { id } }',
        token=token,
    )
    me = service.execute(
        "{ me { username roles { name } } myPermissions }", token=token
    )

    assert update.codes() == ["FORBIDDEN"]
    assert me.errors == []
    assert me.data["myPermissions"] == []


@pytest.mark.parametrize("user_id", ["\u00b2", "\uff11", "\u0661"])
def test_non_ascii_digits_are_not_ids(service: RunningService, admin: str, user_id):
    result = service.execute(
        "query($id: ID!) { user(id: $id) { username } }", {"id": user_id}, token=admin
    )
    assert result.codes() == ["NOT_FOUND"]


def test_concurrent_duplicate_roles_conflict(service: RunningService, admin: str):
    import threading

    name = unique_name("race")
    results = []

    def create() -> None:
        results.append(
            service.execute(
                "mutation($n: String!) { createRole(input: {name: $n}) { name } }",
                {"n": name},
                token=admin,
            )
        )

    threads = [threading.Thread(target=create) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    codes = [tuple(r.codes()) for r in results]
    assert codes.count(()) == 1
    assert all(code in {(), ("CONFLICT",)} for code in codes), codes


def test_control_characters_are_rejected(service: RunningService, admin: str):
    email = service.execute(
        "mutation($i: CreateUserInput!) { createUser(input: $i) { id } }",
        {
            "i": {
                "username": unique_name("ctl"),
                "password": "Zq8-control-chars-pw",
                "email": "a\u001b[31m@x.com",
            }
        },
        token=admin,
    )
    description = service.execute(
        "mutation($n: String!, $d: String!) { createRole(input: {name: $n, "
        "description: $d}) { name } }",
        {"n": unique_name("bidi"), "d": "line\u202eevil"},
        token=admin,
    )
    long_key = service.execute(
        "mutation($i: CreateUserInput!) { createUser(input: $i) { id } }",
        {"i": {"username": "\u00df" * 64, "password": "Zq8-control-chars-pw"}},
        token=admin,
    )
    assert email.errors[0]["extensions"]["field"] == "email"
    assert description.errors[0]["extensions"]["field"] == "description"
    assert long_key.errors[0]["extensions"]["field"] == "username"
