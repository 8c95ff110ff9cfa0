"""Password policy and hashing."""

import pytest

from schema.errors import InvalidInput
from schema.passwords import PasswordHasher, PasswordPolicy

FAST = {"memory_cost_kib": 64, "time_cost": 1}


def test_hash_is_argon2id_with_default_cost():
    hasher = PasswordHasher()
    password_hash = hasher.hash("correct horse battery staple")
    assert password_hash.startswith("$argon2id$")
    assert "m=19456,t=2,p=1" in password_hash


def test_verify_accepts_only_the_password():
    hasher = PasswordHasher(**FAST)
    password_hash = hasher.hash("correct horse battery staple")
    assert hasher.verify("correct horse battery staple", password_hash) == (True, False)
    assert hasher.verify("correct horse battery stapl", password_hash) == (False, False)


def test_unicode_forms_verify_alike():
    hasher = PasswordHasher(**FAST)
    composed = "caf\u00e9 au lait pl\u00e9ase"
    decomposed = "cafe\u0301 au lait ple\u0301ase"
    assert hasher.verify(decomposed, hasher.hash(composed))[0]


def test_weaker_hash_is_flagged_for_upgrade():
    weak = PasswordHasher(**FAST).hash("correct horse battery staple")
    strong = PasswordHasher(memory_cost_kib=128, time_cost=2)
    assert strong.verify("correct horse battery staple", weak) == (True, True)


def test_unknown_user_verifies_dummy_hash():
    hasher = PasswordHasher(**FAST)
    assert hasher.verify("anything at all", None) == (False, False)


def test_overlong_password_never_matches():
    hasher = PasswordHasher(**FAST)
    password = "a" * 129
    assert hasher.verify(password, hasher.hash(password)) == (False, False)


@pytest.mark.parametrize(
    ("password", "accepted"),
    [
        pytest.param("qz7-Wk2!vN9", False, id="11-chars"),
        pytest.param("qz7-Wk2!vN9x", True, id="12-chars"),
        pytest.param("qz7-Wk2!vN9x" * 10 + "abcdefgh", True, id="128-chars"),
        pytest.param("qz7-Wk2!vN9x" * 10 + "abcdefghi", False, id="129-chars"),
        pytest.param(
            "\u00e9\u00df\u00f8\u00e5\u00e7\u00fc\u00f1\u00ee\u00f4\u00e6\u0142\u017e",
            True,
            id="12-code-points-24-bytes",
        ),
        pytest.param(
            "\U0001f600\U0001f680\U0001f355\U0001f3b8\U0001f98a\U0001f30d"
            "\U0001f34e\U0001f6b2\U0001f4da\U0001f3b2\U0001f422\U0001f9c0",
            True,
            id="12-emoji",
        ),
    ],
)
def test_policy_counts_code_points(password, accepted):
    policy = PasswordPolicy()
    if accepted:
        assert policy.check(password)
    else:
        with pytest.raises(InvalidInput) as raised:
            policy.check(password)
        assert raised.value.field == "password"


def test_policy_minimum_is_a_setting():
    with pytest.raises(InvalidInput, match="at least 15"):
        PasswordPolicy(min_length=15).check("qz7-Wk2!vN9x-a")


@pytest.mark.parametrize(
    "password",
    [
        pytest.param("password1234", id="common"),
        pytest.param("aaaaaaaaaaaaaaaa", id="repeated"),
        pytest.param("qwertyuiopasdf", id="keyboard-walk"),
    ],
)
def test_policy_rejects_guessable_passwords(password):
    with pytest.raises(InvalidInput, match="too easy to guess"):
        PasswordPolicy().check(password)


@pytest.mark.parametrize(
    "password",
    [
        pytest.param("Margarethe-Quill-88", id="username"),
        pytest.param("xx-MQUILL-77-zz-01", id="email-local-part"),
    ],
)
def test_policy_rejects_personal_words(password):
    with pytest.raises(InvalidInput, match="username or email"):
        PasswordPolicy().check(
            password, personal=["margarethe", "mquill@example.org", None]
        )
