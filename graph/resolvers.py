"""Root query and mutation types."""

import logging
from typing import Annotated

import strawberry
from strawberry.types import Info

from graph.context import Context
from graph.errors import ClientError, ErrorCode
from graph.permissions import public, requires, signed_in
from graph.tokens import issue_access_token
from graph.types import LoginPayload, PenguinFeatures, Prediction, User
from ml.predict import predict_rows
from schema.catalogue import Permission
from schema.errors import InvalidCredentials
from schema.users import authenticate, get_active_user

logger = logging.getLogger(__name__)

TOKEN_TYPE = "Bearer"  # noqa: S105 - the HTTP authentication scheme, not a secret
# Longer values are not looked up at all; they can match no stored account.
MAX_LOGIN_FIELD_LENGTH = 1024


@strawberry.type
class Query:
    @strawberry.field(
        extensions=signed_in(), description="The signed-in user, with roles."
    )
    async def me(self, info: Info[Context, None]) -> User | None:
        services = info.context.services
        principal = info.context.principal
        assert principal is not None  # guaranteed by the field rule
        async with services.session_factory() as session:
            row = await get_active_user(session, principal.user_id)
            if row is None:
                raise ClientError(
                    ErrorCode.UNAUTHENTICATED, "Not authenticated: the user is gone."
                )
            return User.from_row(row)

    @strawberry.field(
        extensions=requires(Permission.PREDICT_RUN),
        description="Predict the species of one penguin with the active model.",
    )
    def predict(
        self, info: Info[Context, None], input: PenguinFeatures
    ) -> Prediction | None:
        model = info.context.services.model
        result = predict_rows(model, [input.as_row()])[0]
        return Prediction.from_result(result, model)


@strawberry.type
class Mutation:
    @strawberry.mutation(
        extensions=public(),
        description=(
            "Sign in with a username and password. Every failure gives the "
            "same UNAUTHENTICATED error."
        ),
    )
    async def login(
        self,
        info: Info[Context, None],
        username: Annotated[str, strawberry.argument(description="Case-insensitive.")],
        password: str,
    ) -> LoginPayload:
        context = info.context
        services = context.services
        if (
            len(username) > MAX_LOGIN_FIELD_LENGTH
            or len(password) > MAX_LOGIN_FIELD_LENGTH
        ):
            # Still costs one hash, so that the length does not shorten the response.
            await services.hasher.verify("x", None)
            logger.info("Login failed: reason=oversized_input ip=%s", context.client_ip)
            raise InvalidCredentials("oversized_input")
        try:
            async with services.transaction() as session:
                user = await authenticate(
                    session,
                    username=username,
                    password=password,
                    hasher=services.hasher,
                )
                user_id = user.id
        except InvalidCredentials as error:
            logger.info(
                "Login failed: reason=%s user_id=%s ip=%s request_id=%s",
                error.reason,
                error.user_id,
                context.client_ip,
                context.request_id,
            )
            raise
        issued = issue_access_token(services.tokens, user_id=user_id)
        logger.info(
            "Login succeeded: user_id=%s ip=%s request_id=%s",
            user_id,
            context.client_ip,
            context.request_id,
        )
        return LoginPayload(
            access_token=issued.token,
            token_type=TOKEN_TYPE,
            expires_in=issued.expires_in,
        )
