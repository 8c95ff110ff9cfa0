"""The predict and predictBatch queries."""

import time

import strawberry
from strawberry.types import Info

from graph.context import Context, caller
from graph.inputs import PenguinFeatures
from graph.metrics import PREDICTED_ROWS, PREDICTIONS
from graph.permissions import requires
from graph.types import Prediction
from ml.errors import InvalidFeatures
from ml.predict import Prediction as PredictionResult
from ml.predict import predict_rows
from schema.audit import record_event
from schema.catalogue import Permission
from schema.errors import InvalidInput


@strawberry.type
class PredictQuery:
    @strawberry.field(
        extensions=requires(Permission.PREDICT_RUN),
        description="Predict the species of one penguin with the active model.",
    )
    async def predict(
        self, info: Info[Context, None], input: PenguinFeatures
    ) -> Prediction | None:
        results = await _predict(info.context, [input.as_row()])
        return Prediction.from_result(results[0], info.context.services.model)

    @strawberry.field(
        extensions=requires(Permission.PREDICT_RUN),
        description=(
            "Predict many penguins at once, in input order. Every row is checked "
            "first; one invalid row fails the call and names its index."
        ),
    )
    async def predict_batch(
        self, info: Info[Context, None], inputs: list[PenguinFeatures]
    ) -> list[Prediction] | None:
        maximum = info.context.services.settings.max_batch_rows
        if not 1 <= len(inputs) <= maximum:
            raise InvalidInput(
                "inputs", f"must hold 1 to {maximum} rows (got {len(inputs)})."
            )
        results = await _predict(info.context, [row.as_row() for row in inputs])
        model = info.context.services.model
        return [Prediction.from_result(result, model) for result in results]


async def _predict(
    context: Context, rows: list[dict[str, object]]
) -> list[PredictionResult]:
    """Predict rows within the caller's quota, then count and audit the call.

    Raises:
        QuotaExceeded: The rows do not fit in the caller's quota.
        InvalidFeatures: A row is invalid; the failure is audited too.
    """
    services = context.services
    model = services.model
    labels = {"model": model.metadata.name, "version": model.metadata.version}
    principal = caller(context)
    await services.quota.take(f"user:{principal.user_id}", len(rows))

    started = time.perf_counter()
    outcome = "success"
    try:
        return predict_rows(model, rows)
    except InvalidFeatures:
        outcome = "invalid_input"
        raise
    finally:
        PREDICTIONS.labels(outcome=outcome, **labels).inc()
        if outcome == "success":
            PREDICTED_ROWS.labels(**labels).inc(len(rows))
        details: dict[str, object] = {
            "rows": len(rows),
            "latencyMs": round((time.perf_counter() - started) * 1000, 2),
            "version": model.metadata.version,
        }
        if services.settings.audit_prediction_inputs:
            details["inputs"] = rows
        async with services.transaction() as session:
            await record_event(
                session,
                services.cipher,
                actor=context.actor(),
                action="predict",
                outcome=outcome,
                target_type="model",
                target_id=model.metadata.name,
                details=details,
            )
