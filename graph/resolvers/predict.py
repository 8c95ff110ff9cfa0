"""The predict query."""

import strawberry
from strawberry.types import Info

from graph.context import Context
from graph.inputs import PenguinFeatures
from graph.metrics import PREDICTED_ROWS, PREDICTIONS
from graph.permissions import requires
from graph.types import Prediction
from ml.errors import InvalidFeatures
from ml.predict import Prediction as PredictionResult
from ml.predict import predict_rows
from ml.registry import LoadedModel
from schema.catalogue import Permission
from schema.errors import InvalidInput


@strawberry.type
class PredictQuery:
    @strawberry.field(
        extensions=requires(Permission.PREDICT_RUN),
        description="Predict the species of one penguin with the active model.",
    )
    def predict(
        self, info: Info[Context, None], input: PenguinFeatures
    ) -> Prediction | None:
        model = info.context.services.model
        result = _predict(model, [input.as_row()])[0]
        return Prediction.from_result(result, model)

    @strawberry.field(
        extensions=requires(Permission.PREDICT_RUN),
        description=(
            "Predict many penguins at once, in input order. Every row is checked "
            "first; one invalid row fails the call and names its index."
        ),
    )
    def predict_batch(
        self, info: Info[Context, None], inputs: list[PenguinFeatures]
    ) -> list[Prediction] | None:
        services = info.context.services
        maximum = services.settings.max_batch_rows
        if not 1 <= len(inputs) <= maximum:
            raise InvalidInput(
                "inputs", f"must hold 1 to {maximum} rows (got {len(inputs)})."
            )
        model = services.model
        results = _predict(model, [row.as_row() for row in inputs])
        return [Prediction.from_result(result, model) for result in results]


def _predict(
    model: LoadedModel, rows: list[dict[str, object]]
) -> list[PredictionResult]:
    """Predict rows and count the call and its rows in the metrics."""
    labels = {"model": model.metadata.name, "version": model.metadata.version}
    try:
        results = predict_rows(model, rows)
    except InvalidFeatures:
        PREDICTIONS.labels(outcome="invalid_input", **labels).inc()
        raise
    PREDICTIONS.labels(outcome="success", **labels).inc()
    PREDICTED_ROWS.labels(**labels).inc(len(results))
    return results
