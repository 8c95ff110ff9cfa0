"""Service accounts and their scoped API keys."""

import pytest

from tests.support import RunningService, unique_name

CREATE_KEY = """
mutation($input: CreateApiKeyInput!) {
  createApiKey(input: $input) { key apiKey { id prefix permissions expiresAt } }
}
"""
PREDICT = (
    '{ predict(input: {penguins: {island: "Biscoe", flipperLengthMm: 220.0}}) { label '
    "probabilities { probability } } }"
)


@pytest.fixture(scope="module")
def account(service: RunningService, tokens) -> str:
    result = service.execute(
        "mutation($u: String!) { createServiceAccount(username: $u) { id } }",
        {"u": unique_name("batch-job")},
        token=tokens["admin"],
    )
    assert result.errors == []
    return result.data["createServiceAccount"]["id"]


def _key(service: RunningService, tokens, account: str, permissions, **extra) -> dict:
    result = service.execute(
        CREATE_KEY,
        {
            "input": {
                "serviceAccountId": account,
                "name": "nightly",
                "permissions": permissions,
                **extra,
            }
        },
        token=tokens["admin"],
    )
    assert result.errors == [], result.errors
    service.remember(result.data["createApiKey"]["key"])
    return result.data["createApiKey"]


def test_key_runs_predictions_within_its_scope(
    service: RunningService, tokens, account
):
    created = _key(service, tokens, account, ["predict:run"])
    key = created["key"]
    assert key.startswith(f"fgk_{created['apiKey']['prefix']}_")

    result = service.execute(PREDICT, token=key)

    assert result.data["predict"]["label"] == "Gentoo"
    assert result.codes() == ["FORBIDDEN"]
    assert (
        result.error_at("predict", "probabilities")["extensions"]["requiredPermission"]
        == "predict:proba"
    )


@pytest.mark.parametrize(
    "document",
    [
        "{ users { totalCount } }",
        "{ roles { name } }",
        "{ auditEvents { totalCount } }",
        'mutation { createRole(input: {name: "from-key"}) { name } }',
    ],
)
def test_key_cannot_touch_accounts(service: RunningService, tokens, account, document):
    key = _key(service, tokens, account, ["predict:run", "predict:proba"])["key"]
    assert service.execute(document, token=key).codes() == ["FORBIDDEN"]


@pytest.mark.parametrize(
    "permission", ["users:read", "users:write", "roles:write", "audit:read"]
)
def test_keys_cannot_carry_management_permissions(
    service: RunningService, tokens, account, permission
):
    result = service.execute(
        CREATE_KEY,
        {
            "input": {
                "serviceAccountId": account,
                "name": "bad",
                "permissions": [permission],
            }
        },
        token=tokens["admin"],
    )
    assert result.codes() == ["BAD_USER_INPUT"]
    assert result.errors[0]["extensions"]["field"] == "permissions"


def test_revoked_key_stops_at_once(service: RunningService, tokens, account):
    created = _key(service, tokens, account, ["predict:run"])
    assert service.execute(PREDICT, token=created["key"]).data["predict"]["label"]
    service.execute(
        "mutation($id: ID!) { revokeApiKey(id: $id) { revokedAt } }",
        {"id": created["apiKey"]["id"]},
        token=tokens["admin"],
    )
    assert service.execute(PREDICT, token=created["key"]).codes() == ["UNAUTHENTICATED"]


def test_expired_key_is_refused(service: RunningService, tokens, account):
    created = _key(service, tokens, account, ["predict:run"], expiresInDays=1)
    with service.clock_moved(2 * 86400):
        assert service.execute(PREDICT, token=created["key"]).codes() == [
            "UNAUTHENTICATED"
        ]


def test_forged_and_mangled_keys_are_refused(service: RunningService, tokens, account):
    key = _key(service, tokens, account, ["predict:run"])["key"]
    prefix, secret = key[4:16], key[17:]
    for forged in (
        f"fgk_{prefix}_{'A' * len(secret)}",
        f"fgk_{'0' * 12}_{secret}",
        key + "x",
        "fgk_",
    ):
        assert service.execute(PREDICT, token=forged).codes() == ["UNAUTHENTICATED"]


def test_listing_shows_no_secret(service: RunningService, tokens, account):
    created = _key(service, tokens, account, ["predict:run"])
    service.execute(PREDICT, token=created["key"])
    listed = service.execute(
        "query($id: ID!) { apiKeys(serviceAccountId: $id) { prefix lastUsedAt } }",
        {"id": account},
        token=tokens["admin"],
    )
    assert created["key"] not in str(listed.data)
    mine = [
        k for k in listed.data["apiKeys"] if k["prefix"] == created["apiKey"]["prefix"]
    ]
    assert mine[0]["lastUsedAt"] is not None


def test_service_account_cannot_sign_in_with_password(service: RunningService, tokens):
    name = unique_name("svc")
    service.execute(
        "mutation($u: String!) { createServiceAccount(username: $u) { id } }",
        {"u": name},
        token=tokens["admin"],
    )
    result = service.execute(
        'mutation($u: String!) { login(username: $u, password: "anything-at-all-1") '
        "{ accessToken } }",
        {"u": name},
    )
    assert result.codes() == ["UNAUTHENTICATED"]


def test_keys_only_for_service_accounts(service: RunningService, tokens):
    user_id, _, _ = service.add_user([])
    result = service.execute(
        CREATE_KEY,
        {
            "input": {
                "serviceAccountId": user_id,
                "name": "x",
                "permissions": ["predict:run"],
            }
        },
        token=tokens["admin"],
    )
    assert result.codes() == ["BAD_USER_INPUT"]


def test_key_cannot_change_its_account(service: RunningService, tokens, account):
    key = _key(service, tokens, account, ["predict:run"])["key"]
    result = service.execute(
        'mutation { updateMe(input: {displayName: "pwned"}) { id } }', token=key
    )
    assert result.codes() == ["FORBIDDEN"]


@pytest.mark.parametrize("days", [0, 367, 2147483647, -1000000000])
def test_key_lifetime_is_bounded(service: RunningService, tokens, account, days):
    result = service.execute(
        CREATE_KEY,
        {
            "input": {
                "serviceAccountId": account,
                "name": "x",
                "permissions": ["predict:run"],
                "expiresInDays": days,
            }
        },
        token=tokens["admin"],
    )
    assert result.codes() == ["BAD_USER_INPUT"]
    assert result.errors[0]["extensions"]["field"] == "expiresInDays"
