"""Root query and mutation types, assembled from one module per area."""

import strawberry

from graph.resolvers.account import AccountMutation, AccountQuery
from graph.resolvers.audit import AuditQuery
from graph.resolvers.predict import PredictQuery
from graph.resolvers.roles import RoleMutation, RoleQuery
from graph.resolvers.users import UserMutation, UserQuery


@strawberry.type
class Query(AccountQuery, PredictQuery, UserQuery, RoleQuery, AuditQuery):
    pass


@strawberry.type
class Mutation(AccountMutation, UserMutation, RoleMutation):
    pass


__all__ = ["Mutation", "Query"]
