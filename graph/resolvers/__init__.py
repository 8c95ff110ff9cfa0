"""Root query and mutation types, assembled from one module per area."""

import strawberry

from graph.resolvers.account import AccountMutation, AccountQuery
from graph.resolvers.audit import AuditQuery
from graph.resolvers.models import ModelMutation, ModelQuery
from graph.resolvers.predict import PredictQuery
from graph.resolvers.roles import RoleMutation, RoleQuery
from graph.resolvers.service_accounts import (
    ServiceAccountMutation,
    ServiceAccountQuery,
)
from graph.resolvers.sessions import SessionMutation, SessionQuery
from graph.resolvers.users import UserMutation, UserQuery


@strawberry.type
class Query(
    AccountQuery,
    SessionQuery,
    PredictQuery,
    ModelQuery,
    UserQuery,
    RoleQuery,
    ServiceAccountQuery,
    AuditQuery,
):
    pass


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


__all__ = ["Mutation", "Query"]
