"""Predictions through the gql client, by persona."""

import math

import pytest

from ml.train import load_training_frame
from tests.support import RunningService

PREDICT = """
query Predict($input: PenguinFeatures!) {
  predict(input: $input) {
    label
    probabilities { label probability }
    modelName
    modelVersion
  }
}
"""

COLUMNS = {
    "island": "island",
    "sex": "sex",
    "bill_length_mm": "billLengthMm",
    "bill_depth_mm": "billDepthMm",
    "flipper_length_mm": "flipperLengthMm",
    "body_mass_g": "bodyMassG",
}


def _dataset_rows(count_per_species: int) -> list[tuple[dict[str, object], str]]:
    frame = load_training_frame().dropna()
    frame = frame[frame["sex"] != "missing"]
    rows = []
    for _, group in frame.groupby("species"):
        for _, record in group.head(count_per_species).iterrows():
            features = {graph: record[column] for column, graph in COLUMNS.items()}
            features = {
                key: (float(value) if isinstance(value, int | float) else value)
                for key, value in features.items()
            }
            rows.append((features, record["species"]))
    return rows


def test_analyst_predicts_real_rows(service: RunningService, tokens: dict[str, str]):
    rows = _dataset_rows(count_per_species=4)
    correct = 0
    for features, species in rows:
        result = service.execute(PREDICT, {"input": features}, token=tokens["analyst"])
        assert result.errors == []
        prediction = result.data["predict"]
        total = sum(p["probability"] for p in prediction["probabilities"])
        assert math.isclose(total, 1.0, abs_tol=1e-6)
        assert {p["label"] for p in prediction["probabilities"]} == {
            "Adelie",
            "Chinstrap",
            "Gentoo",
        }
        best = max(prediction["probabilities"], key=lambda p: p["probability"])
        assert prediction["label"] == best["label"]
        assert prediction["modelName"] == "penguins"
        correct += prediction["label"] == species
    assert correct >= len(rows) - 1, f"{correct} of {len(rows)} correct"


def test_viewer_gets_label_and_forbidden_probabilities(
    service: RunningService, tokens: dict[str, str]
):
    features, species = _dataset_rows(count_per_species=1)[2]
    result = service.execute(PREDICT, {"input": features}, token=tokens["viewer"])

    assert result.codes() == ["FORBIDDEN"]
    assert result.error_at("predict", "probabilities")["extensions"]["code"] == (
        "FORBIDDEN"
    )
    assert result.data["predict"]["probabilities"] is None
    assert result.data["predict"]["label"] == species
    assert result.data["predict"]["modelVersion"]


def test_user_without_roles_is_forbidden(
    service: RunningService, tokens: dict[str, str]
):
    result = service.execute(
        PREDICT, {"input": {"island": "Dream"}}, token=tokens["nobody"]
    )
    assert result.codes() == ["FORBIDDEN"]
    assert result.data == {"predict": None}


def test_anonymous_is_unauthenticated(service: RunningService):
    result = service.execute(PREDICT, {"input": {"island": "Dream"}})
    assert result.codes() == ["UNAUTHENTICATED"]
    assert result.data == {"predict": None}


def test_missing_values_are_handled(service: RunningService, tokens: dict[str, str]):
    result = service.execute(
        PREDICT,
        {"input": {"flipperLengthMm": 230.0, "billDepthMm": 14.0}},
        token=tokens["analyst"],
    )
    assert result.errors == []
    assert result.data["predict"]["label"] == "Gentoo"


BAD_INPUTS = [
    pytest.param({"island": "Atlantis"}, "island", id="unknown-island"),
    pytest.param({"sex": "MALE"}, "sex", id="category-wrong-case"),
    pytest.param({"bodyMassG": -3500.0}, "bodyMassG", id="negative-mass"),
    pytest.param({"bodyMassG": 0.0}, "bodyMassG", id="zero-mass"),
    pytest.param({"flipperLengthMm": 1e9}, "flipperLengthMm", id="implausible-length"),
    pytest.param({}, None, id="missing-everything"),
]


@pytest.mark.parametrize(("features", "field"), BAD_INPUTS)
def test_bad_input_is_rejected(
    service: RunningService, tokens: dict[str, str], features, field
):
    result = service.execute(PREDICT, {"input": features}, token=tokens["analyst"])

    assert result.codes() == ["BAD_USER_INPUT"]
    error = result.errors[0]
    assert error["extensions"].get("field") == field
    if field is not None:
        assert field in error["message"]
    assert result.data == {"predict": None}
    assert service.is_alive()


WRONG_TYPES = [
    pytest.param({"bodyMassG": "heavy"}, id="string-for-number"),
    pytest.param({"island": 3}, id="number-for-string"),
    pytest.param({"wingspan": 3.0}, id="unknown-field"),
    pytest.param("Dream", id="scalar-for-object"),
]


@pytest.mark.parametrize("features", WRONG_TYPES)
def test_wrongly_typed_variables_are_rejected(
    service: RunningService, tokens: dict[str, str], features
):
    result = service.execute(PREDICT, {"input": features}, token=tokens["analyst"])

    assert result.codes() == ["BAD_USER_INPUT"]
    assert "$input" in result.errors[0]["message"]
    assert result.data is None


def test_wrongly_typed_literal_is_rejected(
    service: RunningService, tokens: dict[str, str]
):
    result = service.execute(
        '{ predict(input: {bodyMassG: "heavy"}) { label } }', token=tokens["analyst"]
    )
    assert result.codes() == ["BAD_USER_INPUT"]
    assert "Float" in result.errors[0]["message"]


def test_service_keeps_serving_after_bad_input(
    service: RunningService, tokens: dict[str, str]
):
    for features, _ in BAD_INPUTS_VALUES:
        service.execute(PREDICT, {"input": features}, token=tokens["analyst"])
    result = service.execute(
        PREDICT,
        {"input": {"island": "Torgersen", "billLengthMm": 39.1}},
        token=tokens["analyst"],
    )
    assert result.errors == []
    assert result.data["predict"]["label"] == "Adelie"


BAD_INPUTS_VALUES = [(p.values[0], p.values[1]) for p in BAD_INPUTS]


BATCH = """
query Batch($inputs: [PenguinFeatures!]!) {
  predictBatch(inputs: $inputs) { label modelVersion }
}
"""


def test_batch_predicts_rows_in_order(service: RunningService, tokens):
    rows = _dataset_rows(count_per_species=10)
    result = service.execute(
        BATCH, {"inputs": [features for features, _ in rows]}, token=tokens["viewer"]
    )
    assert result.errors == []
    labels = [item["label"] for item in result.data["predictBatch"]]
    expected = [species for _, species in rows]
    assert len(labels) == 30
    assert sum(a == b for a, b in zip(labels, expected, strict=True)) >= 28


def test_batch_names_the_bad_row(service: RunningService, tokens):
    inputs = [{"island": "Dream"}, {"island": "Dream"}, {"bodyMassG": -1.0}]
    result = service.execute(BATCH, {"inputs": inputs}, token=tokens["viewer"])
    assert result.codes() == ["BAD_USER_INPUT"]
    extensions = result.errors[0]["extensions"]
    assert extensions["row"] == 2
    assert extensions["field"] == "bodyMassG"
    assert result.errors[0]["message"].startswith("Row 2:")


@pytest.mark.parametrize("size", [0, 1001])
def test_batch_size_is_bounded(service: RunningService, tokens, size):
    result = service.execute(
        BATCH, {"inputs": [{"island": "Dream"}] * size}, token=tokens["viewer"]
    )
    assert result.codes() == ["BAD_USER_INPUT"]
    assert result.errors[0]["extensions"]["field"] == "inputs"


def test_batch_needs_predict_permission(service: RunningService, tokens):
    result = service.execute(
        BATCH, {"inputs": [{"island": "Dream"}]}, token=tokens["nobody"]
    )
    assert result.codes() == ["FORBIDDEN"]


EXPLAIN = """
query($input: PenguinFeatures!) {
  predict(input: $input) {
    label
    explanation { label baseValue contributions { feature contribution } }
  }
}
"""


def test_analyst_gets_an_explanation(service: RunningService, tokens):
    features, species = _dataset_rows(count_per_species=1)[2]
    result = service.execute(EXPLAIN, {"input": features}, token=tokens["analyst"])
    assert result.errors == []
    explanation = result.data["predict"]["explanation"]
    assert explanation["label"] == species
    assert [c["feature"] for c in explanation["contributions"]] == list(
        COLUMNS.values()
    )
    assert all(math.isfinite(c["contribution"]) for c in explanation["contributions"])
    # The predicted class's raw score is above its average.
    assert sum(c["contribution"] for c in explanation["contributions"]) > 0


def test_viewer_gets_no_explanation(service: RunningService, tokens):
    result = service.execute(
        EXPLAIN, {"input": {"island": "Dream"}}, token=tokens["viewer"]
    )
    assert result.codes() == ["FORBIDDEN"]
    assert result.data["predict"]["label"]
    assert result.data["predict"]["explanation"] is None
