"""The permission catalogue and the built-in roles.

This module is the one place that names permissions. The database is seeded
from it, the GraphQL schema refers to it, and the role documentation is
derived from it.
"""

import enum
from types import MappingProxyType


class Permission(enum.StrEnum):
    """A permission, named `area:action`."""

    PREDICT_RUN = "predict:run"
    PREDICT_PROBA = "predict:proba"
    PREDICT_EXPLAIN = "predict:explain"
    USERS_READ = "users:read"
    USERS_WRITE = "users:write"
    ROLES_READ = "roles:read"
    ROLES_WRITE = "roles:write"
    AUDIT_READ = "audit:read"
    SCHEMA_INTROSPECT = "schema:introspect"
    MODELS_READ = "models:read"
    MODELS_WRITE = "models:write"


PERMISSION_DESCRIPTIONS: MappingProxyType[Permission, str] = MappingProxyType(
    {
        Permission.PREDICT_RUN: "Run a model and read the predicted label.",
        Permission.PREDICT_PROBA: "Read the class probabilities of a prediction.",
        Permission.PREDICT_EXPLAIN: (
            "Read why the model predicted a label: per-feature SHAP contributions."
        ),
        Permission.USERS_READ: "Read other users' accounts.",
        Permission.USERS_WRITE: "Create, change and deactivate user accounts.",
        Permission.ROLES_READ: "Read roles and the permissions they grant.",
        Permission.ROLES_WRITE: "Create, change and delete roles.",
        Permission.AUDIT_READ: "Read the audit log of sign-ins and account changes.",
        Permission.MODELS_READ: "Read the models, their versions and metadata.",
        Permission.MODELS_WRITE: "Activate a model version or roll back.",
        Permission.SCHEMA_INTROSPECT: (
            "Introspect the GraphQL schema in production; everyone may in development."
        ),
    }
)


class BuiltinRole(enum.StrEnum):
    """A role that the service creates at initialization."""

    ADMIN = "admin"
    ANALYST = "analyst"
    VIEWER = "viewer"
    AUDITOR = "auditor"


BUILTIN_ROLE_PERMISSIONS: MappingProxyType[BuiltinRole, frozenset[Permission]] = (
    MappingProxyType(
        {
            BuiltinRole.ADMIN: frozenset(Permission),
            BuiltinRole.ANALYST: frozenset(
                {
                    Permission.PREDICT_RUN,
                    Permission.PREDICT_PROBA,
                    Permission.PREDICT_EXPLAIN,
                }
            ),
            BuiltinRole.VIEWER: frozenset({Permission.PREDICT_RUN}),
            BuiltinRole.AUDITOR: frozenset({Permission.AUDIT_READ}),
        }
    )
)

BUILTIN_ROLE_DESCRIPTIONS: MappingProxyType[BuiltinRole, str] = MappingProxyType(
    {
        BuiltinRole.ADMIN: "Every permission in the catalogue.",
        BuiltinRole.ANALYST: (
            "Runs predictions and reads class probabilities and explanations."
        ),
        BuiltinRole.VIEWER: "Runs predictions and reads the predicted label only.",
        BuiltinRole.AUDITOR: "Reads the audit log.",
    }
)


# The only permissions an API key may carry: machine clients run predictions
# and never read or manage accounts, roles or the audit log.
API_KEY_PERMISSIONS: frozenset[Permission] = frozenset(
    {Permission.PREDICT_RUN, Permission.PREDICT_PROBA}
)
