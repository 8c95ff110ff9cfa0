"""Training, loading and input validation of the penguin model."""

import asyncio
import dataclasses
import math
import shutil
from pathlib import Path

import pytest

from ml.errors import InvalidFeatures, ModelUnavailable
from ml.predict import predict_rows, validate_row
from ml.registry import LoadedModel, load_latest
from ml.train import MODEL_NAME, load_training_frame


def test_training_reaches_high_held_out_accuracy(loaded_model: LoadedModel):
    metrics = loaded_model.metadata.metrics
    assert metrics["accuracy"] >= 0.95
    assert metrics["accuracy_with_missing"] >= 0.8


def test_metadata_describes_features(loaded_model: LoadedModel):
    metadata = loaded_model.metadata
    assert metadata.classes == ("Adelie", "Chinstrap", "Gentoo")
    by_name = {spec.name: spec for spec in metadata.features}
    assert by_name["island"].categories == ("Biscoe", "Dream", "Torgersen")
    assert by_name["sex"].categories == ("female", "male")
    assert by_name["body_mass_g"].kind == "numeric"
    assert metadata.training_rows + metadata.test_rows == 344
    assert metadata.trained_at


def test_training_frame_has_no_missing_categories():
    frame = load_training_frame()
    assert frame["sex"].isna().sum() == 0
    assert (frame["sex"] == "missing").sum() == 11


def test_prediction_of_every_row_sums_to_one(loaded_model: LoadedModel):
    frame = load_training_frame().head(50)
    rows = [
        {
            column: (
                None
                if value == "missing"
                or (isinstance(value, float) and math.isnan(value))
                else value
            )
            for column, value in record.items()
            if column in {spec.name for spec in loaded_model.metadata.features}
        }
        for record in frame.to_dict("records")
    ]
    predictions = predict_rows(loaded_model, rows)
    assert len(predictions) == 50
    for prediction in predictions:
        assert math.isclose(sum(prediction.probabilities.values()), 1.0, abs_tol=1e-9)


@pytest.mark.parametrize(
    ("row", "feature"),
    [
        pytest.param({"island": "Mars"}, "island", id="unknown-category"),
        pytest.param({"island": 3}, "island", id="number-category"),
        pytest.param({"body_mass_g": -1.0}, "body_mass_g", id="negative"),
        pytest.param({"body_mass_g": math.nan}, "body_mass_g", id="nan"),
        pytest.param({"body_mass_g": math.inf}, "body_mass_g", id="infinity"),
        pytest.param({"body_mass_g": True}, "body_mass_g", id="boolean"),
        pytest.param({"wingspan": 1.0}, "wingspan", id="unknown-feature"),
        pytest.param({}, None, id="empty"),
    ],
)
def test_invalid_rows_name_the_feature(loaded_model: LoadedModel, row, feature):
    with pytest.raises(InvalidFeatures) as raised:
        validate_row(loaded_model.metadata, row)
    assert raised.value.feature == feature


def test_missing_values_become_model_missing(loaded_model: LoadedModel):
    values = validate_row(loaded_model.metadata, {"bill_length_mm": 40.0})
    assert values[0] == loaded_model.metadata.missing_category
    assert math.isnan(values[-1])


def test_missing_model_is_reported(tmp_path: Path):
    with pytest.raises(ModelUnavailable, match="fieldguard train"):
        load_latest(tmp_path, MODEL_NAME)


def test_broken_model_is_reported(tmp_path: Path, loaded_model: LoadedModel):
    broken = tmp_path / MODEL_NAME / "1"
    shutil.copytree(loaded_model.directory, broken)
    (broken / "model.cbm").write_bytes(b"not a model")
    with pytest.raises(ModelUnavailable, match="missing or broken"):
        load_latest(tmp_path, MODEL_NAME)


def test_explanations_are_computed_once_per_result(loaded_model: LoadedModel):
    from graph.types import Prediction, PredictionBatch
    from ml.predict import predict_columns

    batch = PredictionBatch.from_result(
        predict_columns(loaded_model, {"island": ["Dream", "Biscoe"]}), loaded_model
    )
    single = Prediction.from_result(
        predict_rows(loaded_model, [{"island": "Dream"}])[0], loaded_model
    )

    async def twice() -> tuple[object, object]:
        # Aliases of the field call the resolver once each, together.
        return await asyncio.gather(batch.explanations(), batch.explanations())

    first, second = asyncio.run(twice())
    assert first is second
    assert len(first) == 2
    assert single.explanation() is single.explanation()


def test_rows_and_columns_predict_alike(loaded_model: LoadedModel):
    from ml.predict import predict_columns

    rows = [
        {"island": "Dream", "bill_length_mm": 49.0, "sex": "male"},
        {"island": "Biscoe", "body_mass_g": 5200.0},
        {"flipper_length_mm": 181.0, "bill_depth_mm": 18.5},
    ]
    columns = {
        name: [row.get(name) for row in rows]
        for name in loaded_model.feature_names
        if any(name in row for row in rows)
    }

    # A few rows are read as rows, a batch as typed columns.
    by_row = predict_rows(loaded_model, rows)
    by_column = predict_columns(loaded_model, columns)

    assert [p.label for p in by_row] == by_column.labels
    for index, prediction in enumerate(by_row):
        for label, probability in prediction.probabilities.items():
            assert probability == pytest.approx(
                by_column.probabilities[label][index], abs=1e-9
            )


def _open_categories(loaded_model: LoadedModel) -> LoadedModel:
    """Return the model with `sex` passing unseen values to CatBoost."""
    features = tuple(
        dataclasses.replace(spec, unseen="model", categories=())
        if spec.name == "sex"
        else spec
        for spec in loaded_model.metadata.features
    )
    return LoadedModel(
        metadata=dataclasses.replace(loaded_model.metadata, features=features),
        model=loaded_model.model,
        directory=loaded_model.directory,
    )


def test_lone_surrogate_category_is_invalid(loaded_model: LoadedModel):
    loaded = _open_categories(loaded_model)

    with pytest.raises(InvalidFeatures, match="lone surrogate") as raised:
        validate_row(loaded.metadata, {"sex": "fe\udcffmale"})
    assert raised.value.feature == "sex"
    # Other text outside ASCII reaches the model.
    assert predict_rows(loaded, [{"sex": "mâle", "island": "Dream"}])[0].label


def test_lone_surrogate_in_column_names_row(loaded_model: LoadedModel):
    from ml.predict import predict_columns

    loaded = _open_categories(loaded_model)

    with pytest.raises(InvalidFeatures, match="lone surrogate") as raised:
        predict_columns(loaded, {"sex": ["male", None, "\ud800", "female"]})
    assert raised.value.feature == "sex"
    assert raised.value.row == 2


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (18900.0001, "must be at most 18900 (got 18900.0001)."),
        (-1e-09, "must be greater than 0 (got -1e-09)."),
    ],
)
def test_range_error_shows_exact_value(loaded_model: LoadedModel, value, message):
    with pytest.raises(InvalidFeatures) as raised:
        validate_row(loaded_model.metadata, {"body_mass_g": value})
    assert raised.value.feature == "body_mass_g"
    assert raised.value.reason == message
