"""User administration and self-service through the gql client."""

import pytest

from tests.support import RunningService, strong_password, unique_name

USER_FIELDS = "id username email displayName isActive mustChangePassword roles { name }"
CREATE = f"""
mutation($input: CreateUserInput!) {{ createUser(input: $input) {{ {USER_FIELDS} }} }}
"""
UPDATE = f"""
mutation($id: ID!, $input: UpdateUserInput!) {{
  updateUser(id: $id, input: $input) {{ {USER_FIELDS} }}
}}
"""
GET = f"query($id: ID!) {{ user(id: $id) {{ {USER_FIELDS} }} }}"
SET_ROLES = """
mutation($id: ID!, $roles: [String!]!) {
  setUserRoles(id: $id, roles: $roles) { roles { name } }
}
"""
ME = "{ me { id username email displayName permissions } myPermissions }"
PREDICT = (
    '{ predict(input: {penguins: {island: "Dream", billLengthMm: 50.0}}) { label } }'
)


@pytest.fixture(scope="module")
def admin(service: RunningService) -> str:
    return service.login("admin")


def test_admin_creates_user_with_profile(service: RunningService, admin: str):
    username = unique_name("Carla")
    email = f"{username}@Example.org"
    result = service.execute(
        CREATE,
        {
            "input": {
                "username": username,
                "password": strong_password(),
                "roles": ["analyst"],
                "email": email,
                "displayName": "Carla Q.",
            }
        },
        token=admin,
    )
    assert result.errors == []
    user = result.data["createUser"]
    assert user["username"] == username
    assert user["email"] == email
    assert user["displayName"] == "Carla Q."
    assert user["isActive"] is True
    assert user["roles"] == [{"name": "analyst"}]


@pytest.mark.parametrize(
    "variant",
    [
        pytest.param(str.upper, id="upper-case"),
        pytest.param(lambda name: name.replace("ff", "\ufb00"), id="ligature-nfkc"),
    ],
)
def test_usernames_are_unique_ignoring_case_and_form(
    service: RunningService, admin: str, variant
):
    username = unique_name("ffion")
    first = service.execute(
        CREATE,
        {"input": {"username": username, "password": strong_password()}},
        token=admin,
    )
    second = service.execute(
        CREATE,
        {"input": {"username": variant(username), "password": strong_password()}},
        token=admin,
    )
    assert first.errors == []
    assert second.codes() == ["CONFLICT"]


def test_emails_are_unique_ignoring_case(service: RunningService, admin: str):
    email = f"{unique_name('dup')}@example.org"
    service.add_user([], email=email)
    result = service.execute(
        CREATE,
        {
            "input": {
                "username": unique_name("other"),
                "password": strong_password(),
                "email": email.upper(),
            }
        },
        token=admin,
    )
    assert result.codes() == ["CONFLICT"]


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        pytest.param("short-1", "at least 12", id="too-short"),
        pytest.param("x" * 129, "at most 128", id="too-long"),
        pytest.param("password123456", "too easy to guess", id="common"),
        pytest.param("{username}-Zebra-42", "username or email", id="has-username"),
    ],
)
def test_password_policy_on_create(
    service: RunningService, admin: str, password, reason
):
    username = unique_name("policy")
    result = service.execute(
        CREATE,
        {
            "input": {
                "username": username,
                "password": password.format(username=username),
            }
        },
        token=admin,
    )
    assert result.codes() == ["BAD_USER_INPUT"]
    assert result.errors[0]["extensions"]["field"] == "password"
    assert reason in result.errors[0]["extensions"]["reason"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("username", "has space", id="username-space"),
        pytest.param("username", "", id="username-empty"),
        pytest.param("email", "not-an-email", id="email"),
        pytest.param("displayName", "x" * 101, id="display-name-long"),
    ],
)
def test_invalid_profile_fields_are_named(
    service: RunningService, admin: str, field, value
):
    fields = {"username": unique_name("field"), "password": strong_password()}
    fields[field] = value
    result = service.execute(CREATE, {"input": fields}, token=admin)
    assert result.codes() == ["BAD_USER_INPUT"]
    assert result.errors[0]["extensions"]["field"] == field


def test_update_user_changes_only_given_fields(service: RunningService, admin: str):
    user_id, username, _ = service.add_user([], email="keep@example.org")
    result = service.execute(
        UPDATE, {"id": user_id, "input": {"displayName": "New Name"}}, token=admin
    )
    assert result.errors == []
    user = result.data["updateUser"]
    assert user["displayName"] == "New Name"
    assert user["email"] == "keep@example.org"
    assert user["username"] == username


def test_deactivated_user_token_stops_working(service: RunningService, admin: str):
    user_id, username, password = service.add_user(["viewer"])
    token = service.login(username)
    assert service.execute(PREDICT, token=token).errors == []

    deactivated = service.execute(
        "mutation($id: ID!) { deactivateUser(id: $id) { isActive } }",
        {"id": user_id},
        token=admin,
    )
    assert deactivated.data["deactivateUser"]["isActive"] is False
    assert service.execute(PREDICT, token=token).codes() == ["UNAUTHENTICATED"]
    login = service.execute(
        "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { "
        "accessToken } }",
        {"u": username, "p": password},
    )
    assert login.codes() == ["UNAUTHENTICATED"]
    assert login.errors[0]["message"] == "Invalid username or password."

    service.execute(
        "mutation($id: ID!) { reactivateUser(id: $id) { isActive } }",
        {"id": user_id},
        token=admin,
    )
    assert service.execute(PREDICT, token=service.login(username)).errors == []


def test_deleted_user_is_gone(service: RunningService, admin: str):
    user_id, username, _ = service.add_user(["viewer"])
    token = service.login(username)
    deleted = service.execute(
        "mutation($id: ID!) { deleteUser(id: $id) }", {"id": user_id}, token=admin
    )
    assert deleted.data == {"deleteUser": user_id}
    assert service.execute(GET, {"id": user_id}, token=admin).codes() == ["NOT_FOUND"]
    codes = service.execute(ME, token=token).codes()
    assert codes
    assert set(codes) == {"UNAUTHENTICATED"}


def test_role_change_applies_on_next_request(service: RunningService, admin: str):
    user_id, username, _ = service.add_user(["viewer"])
    token = service.login(username)
    proba = (
        '{ predict(input: {penguins: {island: "Dream"}}) '
        "{ probabilities { probability } } }"
    )
    assert service.execute(proba, token=token).codes() == ["FORBIDDEN"]

    result = service.execute(
        SET_ROLES, {"id": user_id, "roles": ["analyst"]}, token=admin
    )
    assert result.errors == []
    # Tokens issued under the old roles stop at once; a new one has the new.
    assert service.execute(proba, token=token).codes() == ["UNAUTHENTICATED"]
    token = service.login(username)
    assert service.execute(proba, token=token).errors == []

    service.execute(SET_ROLES, {"id": user_id, "roles": []}, token=admin)
    assert service.execute(PREDICT, token=token).codes() == ["UNAUTHENTICATED"]
    token = service.login(username)
    assert service.execute(PREDICT, token=token).codes() == ["FORBIDDEN"]


def test_reset_password_forces_a_change(service: RunningService, admin: str):
    user_id, username, old_password = service.add_user(["analyst"])
    reset = service.execute(
        "mutation($id: ID!) { resetUserPassword(id: $id) { temporaryPassword user "
        "{ mustChangePassword } } }",
        {"id": user_id},
        token=admin,
    )
    assert reset.errors == []
    temporary = reset.data["resetUserPassword"]["temporaryPassword"]
    service.remember(temporary)
    assert reset.data["resetUserPassword"]["user"]["mustChangePassword"] is True

    old_login = service.execute(
        "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { "
        "accessToken } }",
        {"u": username, "p": old_password},
    )
    assert old_login.codes() == ["UNAUTHENTICATED"]
    login = service.execute(
        "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { "
        "accessToken passwordChangeRequired } }",
        {"u": username, "p": temporary},
    )
    assert login.data["login"]["passwordChangeRequired"] is True
    token = login.data["login"]["accessToken"]
    assert service.execute(PREDICT, token=token).codes() == ["FORBIDDEN"]
    assert service.execute(ME, token=token).data["myPermissions"] == []

    new_password = strong_password()
    changed = service.execute(
        "mutation($c: String!, $n: String!) { changePassword(currentPassword: $c, "
        "newPassword: $n) { mustChangePassword } }",
        {"c": temporary, "n": new_password},
        token=token,
    )
    assert changed.errors == []
    assert changed.data["changePassword"]["mustChangePassword"] is False
    assert (
        service.execute(PREDICT, token=service.login(username, new_password)).errors
        == []
    )


def test_update_me_changes_own_profile(service: RunningService):
    _, username, _ = service.add_user(["viewer"])
    token = service.login(username)
    result = service.execute(
        "mutation($input: UpdateMeInput!) { updateMe(input: $input) { email "
        "displayName } }",
        {"input": {"email": "me@example.net", "displayName": "Me Myself"}},
        token=token,
    )
    assert result.errors == []
    assert result.data["updateMe"] == {
        "email": "me@example.net",
        "displayName": "Me Myself",
    }
    me = service.execute(ME, token=token).data["me"]
    assert me["email"] == "me@example.net"


CHANGE = """
mutation($c: String!, $n: String!) {
  changePassword(currentPassword: $c, newPassword: $n) { id }
}
"""


def test_change_password_needs_current_password(service: RunningService):
    _, username, password = service.add_user([])
    token = service.login(username)

    wrong = service.execute(
        CHANGE, {"c": "not-my-password-1", "n": strong_password()}, token=token
    )
    weak = service.execute(CHANGE, {"c": password, "n": "aaaaaaaaaaaaaaa"}, token=token)
    same = service.execute(CHANGE, {"c": password, "n": password}, token=token)

    assert wrong.codes() == ["BAD_USER_INPUT"]
    assert wrong.errors[0]["extensions"]["field"] == "currentPassword"
    assert weak.codes() == ["BAD_USER_INPUT"]
    assert weak.errors[0]["extensions"]["field"] == "newPassword"
    assert same.codes() == ["BAD_USER_INPUT"]
    assert service.login(username, password)


def test_users_query_filters_and_pages(service: RunningService, admin: str):
    marker = unique_name("pager")
    created = [service.add_user(["auditor"], prefix=marker)[1] for _ in range(3)]
    query = """
    query($filter: UserFilter, $limit: Int!, $offset: Int!) {
      users(filter: $filter, limit: $limit, offset: $offset) {
        totalCount items { username roles { name } }
      }
    }
    """
    first = service.execute(
        query,
        {"filter": {"search": marker.upper()}, "limit": 2, "offset": 0},
        token=admin,
    )
    second = service.execute(
        query, {"filter": {"search": marker}, "limit": 2, "offset": 2}, token=admin
    )
    by_role = service.execute(
        query,
        {"filter": {"role": "auditor", "isActive": True}, "limit": 100, "offset": 0},
        token=admin,
    )

    assert first.data["users"]["totalCount"] == 3
    names = [u["username"] for u in first.data["users"]["items"]]
    names += [u["username"] for u in second.data["users"]["items"]]
    assert names == created
    role_names = {u["username"] for u in by_role.data["users"]["items"]}
    assert set(created) <= role_names
    assert all(
        {"name": "auditor"} in u["roles"] for u in by_role.data["users"]["items"]
    )


def test_users_search_matches_exact_email(service: RunningService, admin: str):
    email = f"{unique_name('find')}@example.org"
    _, username, _ = service.add_user([], email=email)
    query = "query($s: String) { users(filter: {search: $s}) { items { username } } }"

    exact = service.execute(query, {"s": email.upper()}, token=admin)
    partial = service.execute(query, {"s": email[:-4]}, token=admin)

    assert [u["username"] for u in exact.data["users"]["items"]] == [username]
    assert partial.data["users"]["items"] == []


@pytest.mark.parametrize(
    ("limit", "offset", "field"),
    [(0, 0, "limit"), (101, 0, "limit"), (10, -1, "offset"), (10, 10**7, "offset")],
)
def test_users_page_bounds(service: RunningService, admin: str, limit, offset, field):
    result = service.execute(
        "query($l: Int!, $o: Int!) { users(limit: $l, offset: $o) { totalCount } }",
        {"l": limit, "o": offset},
        token=admin,
    )
    assert result.codes() == ["BAD_USER_INPUT"]
    assert result.errors[0]["extensions"]["field"] == field


@pytest.mark.parametrize("user_id", ["999999", "abc", "-1", "1" * 40])
def test_unknown_user_is_not_found(service: RunningService, admin: str, user_id):
    result = service.execute(GET, {"id": user_id}, token=admin)
    assert result.codes() == ["NOT_FOUND"]
