"""Predictions through the gql client, by persona."""

import asyncio
import math
import re

import httpx
import pytest

from ml.train import load_training_frame
from tests.support import RunningService

PREDICT = """
query Predict($input: PredictInput!) {
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


def penguin(features: object) -> dict[str, object]:
    """Wrap one row of features as the penguins model's prediction input."""
    return {"input": {"penguins": features}}


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
        result = service.execute(PREDICT, penguin(features), token=tokens["analyst"])
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


def joined_rows(service: RunningService) -> tuple[float, float]:
    """Return the rows and the calls counted for the model's joined calls."""
    text = httpx.get(service.url.replace("/graphql", "/metrics"), timeout=30).text
    totals = {"sum": 0.0, "count": 0.0}
    pattern = (
        r'^fieldguard_prediction_call_rows_(sum|count)\{model="penguins",[^}]*\} (\S+)$'
    )
    for kind, value in re.findall(pattern, text, re.MULTILINE):
        totals[kind] += float(value)
    return totals["sum"], totals["count"]


def test_concurrent_callers_get_own_rows(
    service: RunningService, tokens: dict[str, str]
):
    rows = [features for features, _ in _dataset_rows(count_per_species=4)]
    alone = [
        service.execute(PREDICT, penguin(features), token=tokens["analyst"])
        for features in rows
    ]
    # Each row twice, by an analyst and by a viewer, all at once.
    sent = [(features, caller) for features in rows for caller in ("analyst", "viewer")]
    rows_before, calls_before = joined_rows(service)

    async def all_at_once() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=len(sent))
        async with httpx.AsyncClient(timeout=30, limits=limits) as client:
            return await asyncio.gather(
                *(
                    client.post(
                        service.url,
                        json={"query": PREDICT, "variables": penguin(features)},
                        headers={"Authorization": f"Bearer {tokens[caller]}"},
                    )
                    for features, caller in sent
                )
            )

    responses = asyncio.run(all_at_once())

    for index, response in enumerate(responses):
        expected = alone[index // 2].data["predict"]
        body = response.json()
        answer = body["data"]["predict"]
        assert answer["label"] == expected["label"]
        if sent[index][1] == "analyst":
            assert "errors" not in body
            assert [p["label"] for p in answer["probabilities"]] == [
                p["label"] for p in expected["probabilities"]
            ]
            assert [p["probability"] for p in answer["probabilities"]] == (
                pytest.approx([p["probability"] for p in expected["probabilities"]])
            )
        else:
            assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"]
            assert answer["probabilities"] is None
    rows_after, calls_after = joined_rows(service)
    assert rows_after - rows_before == len(sent)
    assert 1 <= calls_after - calls_before <= len(sent)


def test_viewer_gets_label_and_forbidden_probabilities(
    service: RunningService, tokens: dict[str, str]
):
    features, species = _dataset_rows(count_per_species=1)[2]
    result = service.execute(PREDICT, penguin(features), token=tokens["viewer"])

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
        PREDICT, penguin({"island": "Dream"}), token=tokens["nobody"]
    )
    assert result.codes() == ["FORBIDDEN"]
    assert result.data == {"predict": None}


def test_anonymous_is_unauthenticated(service: RunningService):
    result = service.execute(PREDICT, penguin({"island": "Dream"}))
    assert result.codes() == ["UNAUTHENTICATED"]
    assert result.data == {"predict": None}


def test_missing_values_are_handled(service: RunningService, tokens: dict[str, str]):
    result = service.execute(
        PREDICT,
        penguin({"flipperLengthMm": 230.0, "billDepthMm": 14.0}),
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
    result = service.execute(PREDICT, penguin(features), token=tokens["analyst"])

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
    result = service.execute(PREDICT, penguin(features), token=tokens["analyst"])

    assert result.codes() == ["BAD_USER_INPUT"]
    assert "$input" in result.errors[0]["message"]
    assert result.data is None


def test_wrongly_typed_literal_is_rejected(
    service: RunningService, tokens: dict[str, str]
):
    result = service.execute(
        '{ predict(input: {penguins: {bodyMassG: "heavy"}}) { label } }',
        token=tokens["analyst"],
    )
    assert result.codes() == ["BAD_USER_INPUT"]
    assert "Float" in result.errors[0]["message"]


def test_service_keeps_serving_after_bad_input(
    service: RunningService, tokens: dict[str, str]
):
    for features, _ in BAD_INPUTS_VALUES:
        service.execute(PREDICT, penguin(features), token=tokens["analyst"])
    result = service.execute(
        PREDICT,
        penguin({"island": "Torgersen", "billLengthMm": 39.1}),
        token=tokens["analyst"],
    )
    assert result.errors == []
    assert result.data["predict"]["label"] == "Adelie"


BAD_INPUTS_VALUES = [(p.values[0], p.values[1]) for p in BAD_INPUTS]


BATCH = """
query Batch($input: PredictBatchInput!) {
  predictBatch(input: $input) {
    rows labels values modelName modelVersion
    probabilities { label values }
  }
}
"""


def columns(rows: list[dict[str, object]]) -> dict[str, object]:
    """Turn rows into the penguins model's batch input, one list per feature."""
    names = list(COLUMNS.values())
    return {
        "input": {"penguins": {name: [row.get(name) for row in rows] for name in names}}
    }


def test_batch_predicts_rows_in_order(service: RunningService, tokens):
    rows = _dataset_rows(count_per_species=10)
    result = service.execute(
        BATCH, columns([features for features, _ in rows]), token=tokens["analyst"]
    )
    assert result.errors == []
    batch = result.data["predictBatch"]
    expected = [species for _, species in rows]
    assert batch["rows"] == 30
    assert batch["values"] is None
    assert sum(a == b for a, b in zip(batch["labels"], expected, strict=True)) >= 28
    by_class = {column["label"]: column["values"] for column in batch["probabilities"]}
    assert set(by_class) == {"Adelie", "Chinstrap", "Gentoo"}
    for index, label in enumerate(batch["labels"]):
        row = {name: values[index] for name, values in by_class.items()}
        assert math.isclose(sum(row.values()), 1.0, abs_tol=1e-6)
        assert max(row, key=row.__getitem__) == label


def test_batch_matches_single_predictions(service: RunningService, tokens):
    rows = [features for features, _ in _dataset_rows(count_per_species=2)]
    rows[1] = {"island": "Dream"}
    rows[3] = {"billLengthMm": 45.0, "sex": "female"}
    batch = service.execute(BATCH, columns(rows), token=tokens["analyst"])
    singles = [
        service.execute(PREDICT, penguin(row), token=tokens["analyst"]).data["predict"]
        for row in rows
    ]
    assert batch.data["predictBatch"]["labels"] == [s["label"] for s in singles]
    first = {p["label"]: p["probability"] for p in singles[3]["probabilities"]}
    for column in batch.data["predictBatch"]["probabilities"]:
        assert math.isclose(column["values"][3], first[column["label"]], rel_tol=1e-9)


def test_viewer_gets_batch_labels_but_no_probabilities(service: RunningService, tokens):
    result = service.execute(
        BATCH, columns([{"island": "Dream"}] * 3), token=tokens["viewer"]
    )
    assert result.codes() == ["FORBIDDEN"]
    assert result.error_at("predictBatch", "probabilities")
    assert len(result.data["predictBatch"]["labels"]) == 3
    assert result.data["predictBatch"]["probabilities"] is None


BAD_BATCHES = [
    pytest.param(
        {"island": ["Dream", "Dream", "Dream"], "bodyMassG": [3000.0, None, -1.0]},
        2,
        "bodyMassG",
        id="out-of-range",
    ),
    pytest.param(
        {"island": ["Dream", "Mars"]}, 1, "island", id="unseen-category-rejected"
    ),
    pytest.param(
        {"bodyMassG": [3000.0, "heavy"]}, 1, "bodyMassG", id="string-for-number"
    ),
    pytest.param({"sex": [None, 1]}, 1, "sex", id="number-for-string"),
    pytest.param({"bodyMassG": [True]}, 0, "bodyMassG", id="boolean-for-number"),
    pytest.param(
        {"island": ["Dream", None], "sex": ["male", None]},
        1,
        None,
        id="empty-row",
    ),
]


@pytest.mark.parametrize(("features", "row", "field"), BAD_BATCHES)
def test_batch_names_the_bad_row_and_field(
    service: RunningService, tokens, features, row, field
):
    result = service.execute(
        BATCH, {"input": {"penguins": features}}, token=tokens["viewer"]
    )
    assert result.codes() == ["BAD_USER_INPUT"]
    extensions = result.errors[0]["extensions"]
    assert extensions["row"] == row
    assert extensions.get("field") == field
    assert result.errors[0]["message"].startswith(f"Row {row}:")
    assert result.data == {"predictBatch": None}


def test_batch_columns_must_agree_in_length(service: RunningService, tokens):
    result = service.execute(
        BATCH,
        {"input": {"penguins": {"island": ["Dream"] * 3, "bodyMassG": [3000.0] * 2}}},
        token=tokens["viewer"],
    )
    assert result.codes() == ["BAD_USER_INPUT"]
    error = result.errors[0]
    # The columns are named as the input type names them.
    assert "as many rows (island 3, bodyMassG 2)" in error["message"]
    assert error["extensions"]["field"] == "input"


def test_batch_column_must_be_list(service: RunningService, tokens):
    result = service.execute(
        BATCH, {"input": {"penguins": {"island": "Dream"}}}, token=tokens["viewer"]
    )
    assert result.codes() == ["BAD_USER_INPUT"]
    assert "must be a list" in result.errors[0]["message"]


@pytest.mark.parametrize("size", [0, 1001])
def test_batch_size_is_bounded(service: RunningService, tokens, size):
    result = service.execute(
        BATCH,
        {"input": {"penguins": {"island": ["Dream"] * size}}},
        token=tokens["viewer"],
    )
    assert result.codes() == ["BAD_USER_INPUT"]
    assert result.errors[0]["extensions"]["field"] == "input"


def test_batch_needs_predict_permission(service: RunningService, tokens):
    result = service.execute(
        BATCH, {"input": {"penguins": {"island": ["Dream"]}}}, token=tokens["nobody"]
    )
    assert result.codes() == ["FORBIDDEN"]


def post_json_text(service: RunningService, text: str, token: str) -> httpx.Response:
    """Post a body written by hand: NaN and Infinity tokens are not JSON, so
    JSON encoders refuse them, but Python clients send them."""
    return httpx.post(
        service.url,
        content=text,
        headers={
            "Content-Type": "application/json",
            "Authorization": f"Bearer {token}",
        },
    )


@pytest.mark.parametrize(
    "body",
    [
        pytest.param('{"penguins": {"bodyMassG": NaN}}', id="nan"),
        pytest.param('{"penguins": {"bodyMassG": Infinity}}', id="infinity"),
        pytest.param('{"penguins": {"bodyMassG": -Infinity}}', id="minus-infinity"),
        pytest.param('{"penguins": {"bodyMassG": 1e999}}', id="overflow"),
        pytest.param(
            '{"penguins": {"bodyMassG": 1' + "0" * 400 + "}}", id="integer-overflow"
        ),
    ],
)
def test_predict_rejects_non_finite_numbers(service: RunningService, tokens, body):
    raw = (
        '{"query": "query($input: PredictInput!) { predict(input: $input) '
        '{ label } }", "variables": {"input": ' + body + "}}"
    )
    payload = post_json_text(service, raw, tokens["analyst"]).json()
    assert payload.get("data") in (None, {"predict": None})
    assert payload["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert service.is_alive()


@pytest.mark.parametrize(
    ("column", "row"),
    [
        pytest.param("[3000.0, 4000.0, NaN]", 2, id="nan"),
        pytest.param("[null, NaN, 4000.0]", 1, id="nan-after-missing"),
        pytest.param("[3000.0, 1" + "0" * 400 + "]", 1, id="integer-overflow"),
        pytest.param("[null, 3000.0, -Infinity]", 2, id="infinity"),
    ],
)
def test_batch_names_non_finite_row(service: RunningService, tokens, column, row):
    raw = (
        '{"query": "query($input: PredictBatchInput!) { predictBatch(input: $input) '
        '{ labels } }", "variables": {"input": {"penguins": '
        '{"bodyMassG": ' + column + "}}}}"
    )
    error = post_json_text(service, raw, tokens["viewer"]).json()["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["row"] == row
    assert error["extensions"]["field"] == "bodyMassG"
    assert len(error["message"]) < 300


@pytest.mark.parametrize(
    "value",
    [
        pytest.param({}, id="no-model"),
        pytest.param({"penguins": None}, id="null-model"),
        pytest.param({"elephants": {"island": "Dream"}}, id="unknown-model"),
    ],
)
def test_predict_input_names_one_model(service: RunningService, tokens, value):
    result = service.execute(PREDICT, {"input": value}, token=tokens["analyst"])
    assert result.codes() == ["BAD_USER_INPUT"]
    assert service.is_alive()


EXPLAIN = """
query($input: PredictInput!) {
  predict(input: $input) {
    label
    explanation { label unit baseValue contributions { feature contribution } }
  }
}
"""


def test_analyst_gets_an_explanation(service: RunningService, tokens):
    features, species = _dataset_rows(count_per_species=1)[2]
    result = service.execute(EXPLAIN, penguin(features), token=tokens["analyst"])
    assert result.errors == []
    explanation = result.data["predict"]["explanation"]
    assert explanation["label"] == species
    assert explanation["unit"] == "logit"
    assert [c["feature"] for c in explanation["contributions"]] == list(
        COLUMNS.values()
    )
    assert all(math.isfinite(c["contribution"]) for c in explanation["contributions"])
    # The predicted class's raw score is above its average.
    assert sum(c["contribution"] for c in explanation["contributions"]) > 0


def test_viewer_gets_no_explanation(service: RunningService, tokens):
    result = service.execute(
        EXPLAIN, penguin({"island": "Dream"}), token=tokens["viewer"]
    )
    assert result.codes() == ["FORBIDDEN"]
    assert result.data["predict"]["label"]
    assert result.data["predict"]["explanation"] is None


def test_batch_explanations_match_single_ones(service: RunningService, tokens):
    rows = [features for features, _ in _dataset_rows(count_per_species=1)]
    query = """
    query($input: PredictBatchInput!) {
      predictBatch(input: $input) {
        labels explanations { label unit baseValue contributions { contribution } }
      }
    }
    """
    batch = service.execute(query, columns(rows), token=tokens["analyst"])
    single = service.execute(EXPLAIN, penguin(rows[2]), token=tokens["analyst"])
    assert batch.errors == []
    explanations = batch.data["predictBatch"]["explanations"]
    assert [e["label"] for e in explanations] == batch.data["predictBatch"]["labels"]
    one = single.data["predict"]["explanation"]
    assert math.isclose(explanations[2]["baseValue"], one["baseValue"], rel_tol=1e-9)
    assert [c["contribution"] for c in explanations[2]["contributions"]] == [
        pytest.approx(c["contribution"]) for c in one["contributions"]
    ]
    viewer = service.execute(query, columns(rows), token=tokens["viewer"])
    assert viewer.codes() == ["FORBIDDEN"]


def test_aliased_batch_explanations_agree(service: RunningService, tokens):
    rows = [features for features, _ in _dataset_rows(count_per_species=2)]
    query = """
    query($input: PredictBatchInput!) {
      predictBatch(input: $input) {
        a: explanations { label baseValue }
        b: explanations { label baseValue }
      }
    }
    """
    # Twice: through Strawberry, then on the known-operation path.
    for _ in range(2):
        result = service.execute(query, columns(rows), token=tokens["analyst"])
        assert result.errors == []
        batch = result.data["predictBatch"]
        assert batch["a"] == batch["b"]
        assert len(batch["a"]) == len(rows)
