"""Validation of feature rows and prediction."""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import catboost

from ml.errors import InvalidFeatures
from ml.metadata import FeatureSpec, ModelMetadata
from ml.registry import LoadedModel


@dataclass(frozen=True, slots=True)
class Prediction:
    label: str
    probabilities: dict[str, float]
    # The validated row in model order, kept for explaining the prediction.
    values: tuple[object, ...] = ()


@dataclass(frozen=True, slots=True)
class Explanation:
    """SHAP contributions of each feature to one class's raw score.

    Attributes:
        label: The class explained.
        base_value: The model's expected raw score for that class.
        contributions: Each feature's share, in the model's raw units
            (log-odds for classifiers); base value plus contributions equals
            the row's raw score for the class.
    """

    label: str
    base_value: float
    contributions: dict[str, float]


def _validate_numeric(spec: FeatureSpec, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidFeatures(spec.name, f"must be a number (got {value!r}).")
    number = float(value)
    if not math.isfinite(number):
        raise InvalidFeatures(spec.name, f"must be a finite number (got {value!r}).")
    if spec.minimum is not None and number <= spec.minimum:
        raise InvalidFeatures(
            spec.name, f"must be greater than {spec.minimum:g} (got {number:g})."
        )
    if spec.maximum is not None and number > spec.maximum:
        raise InvalidFeatures(
            spec.name, f"must be at most {spec.maximum:g} (got {number:g})."
        )
    return number


def _validate_categorical(spec: FeatureSpec, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidFeatures(spec.name, f"must be a string (got {value!r}).")
    if value not in spec.categories:
        allowed = ", ".join(spec.categories)
        truncated = value if len(value) <= 40 else value[:40] + "..."
        raise InvalidFeatures(
            spec.name, f"unknown value {truncated!r}; expected one of: {allowed}."
        )
    return value


def validate_row(metadata: ModelMetadata, row: Mapping[str, object]) -> list[object]:
    """Check one row against the model's features and return it in model order.

    Missing values become NaN for numeric features and the metadata's missing
    category for categorical ones.

    Raises:
        InvalidFeatures: A feature is unknown, of the wrong type or out of
            range, or no feature is given at all.
    """
    known = {spec.name for spec in metadata.features}
    unknown = sorted(set(row) - known)
    if unknown:
        raise InvalidFeatures(unknown[0], "is not a feature of this model.")
    if all(row.get(spec.name) is None for spec in metadata.features):
        raise InvalidFeatures(None, "at least one feature must be given.")

    values: list[object] = []
    for spec in metadata.features:
        value = row.get(spec.name)
        if spec.kind == "numeric":
            values.append(math.nan if value is None else _validate_numeric(spec, value))
        elif value is None:
            values.append(metadata.missing_category)
        else:
            values.append(_validate_categorical(spec, value))
    return values


def predict_rows(
    loaded: LoadedModel, rows: Sequence[Mapping[str, object]]
) -> list[Prediction]:
    """Validate rows and predict their class and class probabilities.

    Raises:
        InvalidFeatures: A row is invalid; nothing is predicted.
    """
    metadata = loaded.metadata
    matrix = []
    for index, row in enumerate(rows):
        try:
            matrix.append(validate_row(metadata, row))
        except InvalidFeatures as error:
            raise InvalidFeatures(error.feature, error.reason, row=index) from error
    pool = _pool(metadata, matrix)
    probabilities = loaded.model.predict_proba(pool)
    classes = [str(label) for label in loaded.model.classes_]
    predictions = []
    for values, row_probabilities in zip(matrix, probabilities, strict=True):
        by_class = {
            label: float(p) for label, p in zip(classes, row_probabilities, strict=True)
        }
        label = max(by_class, key=by_class.__getitem__)
        predictions.append(
            Prediction(label=label, probabilities=by_class, values=tuple(values))
        )
    return predictions


def _pool(metadata: ModelMetadata, matrix: Sequence[Sequence[object]]) -> catboost.Pool:
    return catboost.Pool(
        [list(row) for row in matrix],
        cat_features=[
            i for i, spec in enumerate(metadata.features) if spec.kind == "categorical"
        ],
        feature_names=[spec.name for spec in metadata.features],
    )


def explain(loaded: LoadedModel, prediction: Prediction) -> Explanation:
    """Explain a prediction's label with CatBoost's SHAP values."""
    metadata = loaded.metadata
    shap = loaded.model.get_feature_importance(
        data=_pool(metadata, [prediction.values]), type="ShapValues"
    )
    classes = [str(label) for label in loaded.model.classes_]
    per_class = shap[0][classes.index(prediction.label)]
    names = [spec.name for spec in metadata.features]
    return Explanation(
        label=prediction.label,
        base_value=float(per_class[-1]),
        contributions={
            name: float(value)
            for name, value in zip(names, per_class[:-1], strict=True)
        },
    )
