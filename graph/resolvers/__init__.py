"""Root query and mutation types, assembled from one module per area."""

from collections.abc import Iterable

import strawberry

from graph.resolvers.account import AccountMutation, AccountQuery
from graph.resolvers.audit import AuditQuery
from graph.resolvers.models import ModelMutation, ModelQuery
from graph.resolvers.predict import build_predict_query
from graph.resolvers.roles import RoleMutation, RoleQuery
from graph.resolvers.service_accounts import (
    ServiceAccountMutation,
    ServiceAccountQuery,
)
from graph.resolvers.sessions import SessionMutation, SessionQuery
from graph.resolvers.users import UserMutation, UserQuery
from ml.metadata import ModelShape


def build_query(models: Iterable[ModelShape]) -> type:
    """Build the root query type, with prediction inputs for these models."""
    parts = (
        AccountQuery,
        SessionQuery,
        build_predict_query(models),
        ModelQuery,
        UserQuery,
        RoleQuery,
        ServiceAccountQuery,
        AuditQuery,
    )
    return strawberry.type(type("Query", parts, {}))


@strawberry.type
class Mutation(
    SessionMutation,
    AccountMutation,
    UserMutation,
    RoleMutation,
    ServiceAccountMutation,
    ModelMutation,
):
    pass


__all__ = ["Mutation", "build_query"]
