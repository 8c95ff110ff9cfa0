"""The predict and predictBatch queries, typed per served model.

Each model gets its own input types, built from its metadata when the
schema is built: `<Model>Features` (one row, a field per feature) and
`<Model>Columns` (a batch, a list per feature). `PredictInput` and
`PredictBatchInput` hold one field per model, of which a request sets
exactly one.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import strawberry
from graphql import GraphQLSchema
from strawberry.types import Info

from graph.context import Context, caller
from graph.metrics import prediction_series
from graph.permissions import requires
from graph.types import FloatColumn, Prediction, PredictionBatch, StringColumn
from ml.batcher import RowBatcher
from ml.errors import InvalidFeatures
from ml.metadata import ModelShape, graphql_field_name, graphql_type_prefix
from ml.predict import BatchPrediction, predict_columns
from ml.registry import LoadedModel
from schema.catalogue import Permission
from schema.errors import InvalidInput

Result = TypeVar("Result")
REPLACED = "replaced by install_direct_resolvers when the schema is built"


def _input_type(
    shape: ModelShape, *, suffix: str, numeric: object, categorical: object, about: str
) -> type:
    """Build one Strawberry input type with a field per feature of `shape`."""
    annotations: dict[str, object] = {}
    namespace: dict[str, object] = {}
    for index, (feature, kind, description) in enumerate(shape.features):
        attribute = f"feature_{index}"
        annotations[attribute] = (numeric if kind == "numeric" else categorical) | None
        namespace[attribute] = strawberry.field(
            default=None,
            name=graphql_field_name(feature),
            description=description or None,
        )
    name = f"{graphql_type_prefix(shape.name)}{suffix}"
    cls = type(name, (), {"__annotations__": annotations, **namespace})
    return strawberry.input(cls, name=name, description=about)


def _choice_type(name: str, description: str, members: dict[str, type]) -> type:
    """Build a oneOf input with a field per model."""
    annotations = {
        f"model_{index}": member | None for index, member in enumerate(members.values())
    }
    namespace = {
        f"model_{index}": strawberry.field(
            default=strawberry.UNSET, name=graphql_field_name(model)
        )
        for index, model in enumerate(members)
    }
    cls = type(name, (), {"__annotations__": annotations, **namespace})
    return strawberry.input(cls, name=name, description=description, one_of=True)


def build_predict_query(shapes: Iterable[ModelShape]) -> type:
    """Build the query type with `predict` and `predictBatch` for these models.

    The resolvers declared here give Strawberry the fields' types and
    descriptions. `install_direct_resolvers` replaces them once the schema is
    built, and a test checks that it did.
    """
    shapes = sorted(shapes, key=lambda shape: shape.name)
    rows_in: dict[str, type] = {}
    columns_in: dict[str, type] = {}
    for shape in shapes:
        kind = "regression" if shape.task == "regression" else "classification"
        rows_in[shape.name] = _input_type(
            shape,
            suffix="Features",
            numeric=float,
            categorical=str,
            about=(
                f"One row of features for the {kind} model `{shape.name}`. Each "
                "field is optional unless the model's metadata requires it; at "
                "least one must be given."
            ),
        )
        columns_in[shape.name] = _input_type(
            shape,
            suffix="Columns",
            numeric=FloatColumn,
            categorical=StringColumn,
            about=(
                f"A batch for the {kind} model `{shape.name}`: one list per "
                "feature, all of the same length, with null for a missing value. "
                "An omitted feature is missing in every row."
            ),
        )
    predict_input = _choice_type(
        "PredictInput", "The model to use, set to one row of its features.", rows_in
    )
    batch_input = _choice_type(
        "PredictBatchInput", "The model to use, set to a batch of rows.", columns_in
    )

    @strawberry.type
    class PredictQuery:
        @strawberry.field(
            extensions=requires(Permission.PREDICT_RUN),
            description="Predict one row with the active version of a model.",
        )
        async def predict(
            self,
            info: Info[Context, None],
            input: predict_input,  # type: ignore[valid-type]
        ) -> Prediction | None:
            raise NotImplementedError(REPLACED)

        @strawberry.field(
            extensions=requires(Permission.PREDICT_RUN),
            description=(
                "Predict a batch of rows, given as one list per feature, with the "
                "active version of a model. Every value is checked first; one "
                "invalid value fails the call and names its row and field."
            ),
        )
        async def predict_batch(
            self,
            info: Info[Context, None],
            input: batch_input,  # type: ignore[valid-type]
        ) -> PredictionBatch | None:
            raise NotImplementedError(REPLACED)

    return PredictQuery


async def predict_one(
    context: Context, batcher: RowBatcher, row: dict[str, object]
) -> Prediction:
    model = batcher.model
    result = await _run(context, model, 1, row, lambda: batcher.predict(row))
    return Prediction.from_result(result, model)


async def predict_many(
    context: Context, model: LoadedModel, columns: dict[str, Any]
) -> PredictionBatch:
    rows = max((len(column) for column in columns.values()), default=0)
    maximum = context.services.settings.max_batch_rows
    if not 1 <= rows <= maximum:
        raise InvalidInput("input", f"must hold 1 to {maximum} rows (got {rows}).")

    async def predict() -> BatchPrediction:
        return predict_columns(model, columns)

    result = await _run(context, model, rows, columns, predict)
    return PredictionBatch.from_result(result, model)


def direct_resolvers(shapes: Iterable[ModelShape]) -> dict[str, Callable[..., Any]]:
    """Return `predict` and `predictBatch` resolvers over graphql-core's values.

    graphql-core has already checked and coerced the input against the
    generated types; Strawberry would then rebuild it as objects, which for
    one row costs more than the prediction. These resolvers read the
    coerced mappings directly, and replace the declared resolvers once the
    schema is built (`install_direct_resolvers`).
    """
    models = {graphql_field_name(shape.name): shape.name for shape in shapes}
    features = {
        shape.name: {
            graphql_field_name(feature): feature for feature, _, _ in shape.features
        }
        for shape in shapes
    }

    def chosen(info: Any, value: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        # graphql-core has checked that the oneOf input names exactly one model.
        ((field, member),) = value.items()
        name = models[field]
        names = features[name]
        values = {names[key]: item for key, item in member.items() if item is not None}
        return name, values

    async def predict(_source: Any, info: Any, input: dict[str, Any]) -> Prediction:
        name, row = chosen(info, input)
        batcher = info.context.services.models.batcher(name)
        return await predict_one(info.context, batcher, row)

    async def predict_batch(
        _source: Any, info: Any, input: dict[str, Any]
    ) -> PredictionBatch:
        # Checked here, since the model's own check names the columns as
        # its metadata does, not as the input type does.
        ((_, member),) = input.items()
        sizes = {
            key: len(column) for key, column in member.items() if column is not None
        }
        if len(set(sizes.values())) > 1:
            listed = ", ".join(f"{key} {size}" for key, size in sizes.items())
            raise InvalidInput(
                "input", f"every column must hold as many rows ({listed})."
            )
        name, columns = chosen(info, input)
        model = info.context.services.models.current(name)
        return await predict_many(info.context, model, columns)

    return {"predict": predict, "predictBatch": predict_batch}


def install_direct_resolvers(
    schema: GraphQLSchema, shapes: Iterable[ModelShape]
) -> None:
    """Put the direct resolvers on the schema's query type, before its rules."""
    query = schema.query_type
    assert query is not None
    for name, resolver in direct_resolvers(shapes).items():
        query.fields[name].resolve = resolver


async def _run(
    context: Context,
    model: LoadedModel,
    rows: int,
    inputs: object,
    predict: Callable[[], Awaitable[Result]],
) -> Result:
    """Predict within the caller's quota, then count and audit the call.

    Raises:
        QuotaExceeded: The rows do not fit in the caller's quota.
        InvalidFeatures: A row is invalid; the failure is audited too.
    """
    services = context.services
    principal = caller(context)
    await services.quota.take(f"user:{principal.user_id}", rows)

    started = time.perf_counter()
    outcome = "error"
    try:
        result = await predict()
    except InvalidFeatures:
        outcome = "invalid_input"
        raise
    except asyncio.CancelledError:
        # Cancelled while it waited for the model, as by its time limit.
        outcome = "cancelled"
        raise
    else:
        outcome = "success"
        return result
    finally:
        calls, predicted_rows = prediction_series(
            model.metadata.name, model.metadata.version, outcome
        )
        calls.inc()
        if outcome == "success":
            predicted_rows.inc(rows)
        details: dict[str, object] = {
            "rows": rows,
            "latencyMs": round((time.perf_counter() - started) * 1000, 2),
            "version": model.metadata.version,
        }
        if services.settings.audit_prediction_inputs:
            details["inputs"] = inputs
        services.audit_buffer.add(
            actor=context.actor(),
            action="predict",
            outcome=outcome,
            target_type="model",
            target_id=model.metadata.name,
            details=details,
        )
