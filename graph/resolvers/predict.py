"""The predict query."""

import strawberry
from strawberry.types import Info

from graph.context import Context
from graph.inputs import PenguinFeatures
from graph.permissions import requires
from graph.types import Prediction
from ml.predict import predict_rows
from schema.catalogue import Permission


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
        result = predict_rows(model, [input.as_row()])[0]
        return Prediction.from_result(result, model)
