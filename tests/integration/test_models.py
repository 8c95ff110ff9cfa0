"""The model registry: several models, imports, activation, rollback and
refusal of broken versions."""

import json
import math
import shutil
from collections.abc import Iterator
from pathlib import Path

import catboost
import pytest

from ml.train import MODEL_NAME, load_training_frame, train_penguins
from tests.support import (
    RunningService,
    run_cli,
    service_env,
    start_service,
    stop_server,
    strong_password,
)

MODELS = "{ models { name activeVersion versions { version active metrics } } }"
PREDICT = '{ predict(input: {penguins: {island: "Dream"}}) { label modelVersion } }'


MASS_FEATURES = ["island", "sex", "bill_length_mm", "flipper_length_mm"]
# What the model file cannot tell: the imported regression model rejects
# unseen islands but passes unseen values of `sex` to CatBoost.
MASS_METADATA = {
    "target": "body_mass_g",
    "training_data": "palmerpenguins, every bird with a known mass",
    "features": {
        "island": {
            "categories": ["Biscoe", "Dream", "Torgersen"],
            "description": "Island where the bird was seen.",
        },
        "flipper_length_mm": {"minimum": 0, "maximum": 400, "required": True},
    },
}


def train_elsewhere(path: Path, features: list[str], iterations: int = 30) -> Path:
    """Train a body-mass regressor the way a team would outside fieldguard."""
    frame = load_training_frame().dropna(subset=["body_mass_g"])
    model = catboost.CatBoostRegressor(
        iterations=iterations, depth=3, verbose=False, allow_writing_files=False
    )
    categorical = [f for f in features if f in ("island", "sex")]
    model.fit(frame[features], frame["body_mass_g"], cat_features=categorical)
    model.save_model(str(path))
    return path


@pytest.fixture(scope="module")
def registry(model_dir, tmp_path_factory) -> Iterator[RunningService]:
    """A server with its own model folder: two versions of the penguins
    classifier and an imported body-mass regressor."""
    folder = tmp_path_factory.mktemp("registry")
    models = folder / "models"
    shutil.copytree(model_dir, models)
    train_penguins(models, iterations=20)
    admin_password = strong_password()
    env = service_env(
        database_url=f"sqlite:///{folder / 'registry.db'}",
        model_dir=models,
        data_dir=folder / "data",
    )
    metadata = folder / "mass.json"
    metadata.write_text(json.dumps(MASS_METADATA), encoding="utf-8")
    imported = run_cli(
        env,
        "import-model",
        str(train_elsewhere(folder / "mass.cbm", MASS_FEATURES)),
        "--name",
        "mass",
        "--metadata",
        str(metadata),
    )
    assert imported.returncode == 0, imported.stderr
    assert "Imported 'mass' version 1" in imported.stdout
    assert (
        run_cli({**env, "FIELDGUARD_ADMIN_PASSWORD": admin_password}, "init").returncode
        == 0
    )
    service = start_service(env, folder / "server.log", admin_password)
    process = service.process
    service.create_user("viewer", ["viewer"])
    try:
        yield service
    finally:
        stop_server(process)


def _activate(service: RunningService, token: str, version: str):  # type: ignore[no-untyped-def]
    return service.execute(
        'mutation($v: String!) { activateModelVersion(name: "penguins", version: $v) '
        "{ activeVersion } }",
        {"v": version},
        token=token,
    )


def test_models_lists_versions(registry: RunningService):
    result = registry.execute(MODELS, token=registry.login("admin"))
    models = result.data["models"]
    assert [m["name"] for m in models] == ["mass", MODEL_NAME]
    models = models[1:]
    assert [v["version"] for v in models[0]["versions"]] == ["1", "2"]
    assert models[0]["activeVersion"] == "2"
    assert "accuracy" in models[0]["versions"][0]["metrics"]


def test_activate_and_roll_back(registry: RunningService):
    admin = registry.login("admin")
    viewer = registry.login("viewer")

    activated = _activate(registry, admin, "1")
    served = registry.execute(PREDICT, token=viewer)
    forward = _activate(registry, admin, "2")
    rolled = registry.execute(
        'mutation { rollbackModel(name: "penguins") { activeVersion } }', token=admin
    )
    served_after = registry.execute(PREDICT, token=viewer)

    assert activated.data == {"activateModelVersion": {"activeVersion": "1"}}
    assert served.data["predict"]["modelVersion"] == "1"
    assert forward.data == {"activateModelVersion": {"activeVersion": "2"}}
    assert rolled.data == {"rollbackModel": {"activeVersion": "1"}}
    assert served_after.data["predict"]["modelVersion"] == "1"


def test_broken_version_is_refused(registry: RunningService):
    admin = registry.login("admin")
    models = Path(registry.env["FIELDGUARD_MODEL_DIR"]) / MODEL_NAME
    shutil.copytree(models / "1", models / "3")
    (models / "3" / "model.cbm").write_bytes(b"not a model")
    before = registry.execute(PREDICT, token=admin).data["predict"]["modelVersion"]

    refused = _activate(registry, admin, "3")
    missing = _activate(registry, admin, "99")

    assert refused.codes() == ["BAD_USER_INPUT"]
    assert refused.errors[0]["extensions"]["field"] == "version"
    assert missing.codes() == ["BAD_USER_INPUT"]
    assert (
        registry.execute(PREDICT, token=admin).data["predict"]["modelVersion"] == before
    )


def test_models_need_their_permissions(registry: RunningService):
    viewer = registry.login("viewer")
    assert registry.execute(MODELS, token=viewer).codes() == ["FORBIDDEN"]
    assert _activate(registry, viewer, "1").codes() == ["FORBIDDEN"]


MASS_PREDICT = """
query($input: PredictInput!) {
  predict(input: $input) {
    label value probabilities { label } modelName modelVersion
    explanation { label unit baseValue contributions { feature contribution } }
  }
}
"""


def test_second_model_has_typed_input(registry: RunningService):
    admin = registry.login("admin")
    row = {"island": "Biscoe", "sex": "male", "flipperLengthMm": 225.0}
    result = registry.execute(MASS_PREDICT, {"input": {"mass": row}}, token=admin)

    assert result.errors == []
    prediction = result.data["predict"]
    assert prediction["modelName"] == "mass"
    assert prediction["label"] is None
    assert prediction["probabilities"] is None
    assert 4500 < prediction["value"] < 6500  # a large Gentoo male
    explanation = prediction["explanation"]
    assert explanation["unit"] == "target"
    assert explanation["label"] is None
    assert [c["feature"] for c in explanation["contributions"]] == [
        "island",
        "sex",
        "billLengthMm",
        "flipperLengthMm",
    ]
    total = explanation["baseValue"] + sum(
        c["contribution"] for c in explanation["contributions"]
    )
    assert math.isclose(total, prediction["value"], rel_tol=1e-6)


def test_predict_rejects_other_models_feature(registry: RunningService):
    admin = registry.login("admin")
    result = registry.execute(
        MASS_PREDICT, {"input": {"mass": {"bodyMassG": 3000.0}}}, token=admin
    )
    assert result.codes() == ["BAD_USER_INPUT"]
    assert "bodyMassG" in result.errors[0]["message"]


def test_regression_batch_returns_values(registry: RunningService):
    admin = registry.login("admin")
    result = registry.execute(
        "query($input: PredictBatchInput!) { predictBatch(input: $input) "
        "{ rows labels values probabilities { label } } }",
        {
            "input": {
                "mass": {
                    "island": ["Biscoe", "Torgersen"],
                    "flipperLengthMm": [230.0, 185.0],
                }
            }
        },
        token=admin,
    )
    batch = result.data["predictBatch"]
    assert result.errors == []
    assert batch["rows"] == 2
    assert batch["labels"] is None
    assert batch["probabilities"] is None
    assert batch["values"][0] > batch["values"][1]


@pytest.mark.parametrize(
    ("row", "code", "field"),
    [
        # The metadata of `sex` passes unseen values to the model.
        pytest.param(
            {"sex": "unknown", "flipperLengthMm": 200.0}, None, None, id="passed-on"
        ),
        pytest.param(
            {"island": "Anvers", "flipperLengthMm": 200.0},
            "BAD_USER_INPUT",
            "island",
            id="rejected",
        ),
        pytest.param(
            {"island": "Dream"}, "BAD_USER_INPUT", "flipperLengthMm", id="required"
        ),
        pytest.param(
            {"flipperLengthMm": 401.0}, "BAD_USER_INPUT", "flipperLengthMm", id="range"
        ),
    ],
)
def test_metadata_sets_the_policy_per_feature(
    registry: RunningService, row, code, field
):
    admin = registry.login("admin")
    result = registry.execute(MASS_PREDICT, {"input": {"mass": row}}, token=admin)
    if code is None:
        assert result.errors == []
        assert math.isfinite(result.data["predict"]["value"])
    else:
        assert result.codes() == [code]
        assert result.errors[0]["extensions"]["field"] == field


def test_model_metadata_is_listed(registry: RunningService):
    result = registry.execute(
        '{ model(name: "mass") { served activeVersion versions { task target source '
        "trainingData classes features metrics } } }",
        token=registry.login("admin"),
    )
    model = result.data["model"]
    version = model["versions"][0]
    assert model["served"] is True
    assert (version["task"], version["source"]) == ("regression", "imported")
    assert version["target"] == "body_mass_g"
    assert version["trainingData"].startswith("palmerpenguins")
    assert version["classes"] == []
    sex = next(f for f in version["features"] if f["name"] == "sex")
    island = next(f for f in version["features"] if f["name"] == "island")
    assert (sex["unseen"], island["unseen"]) == ("model", "reject")
    assert "learn_RMSE" in version["metrics"]


def test_exported_schema_lists_every_model(registry: RunningService):
    exported = run_cli(registry.env, "export-schema")
    assert exported.returncode == 0
    sdl = exported.stdout
    assert "input MassFeatures {" in sdl
    assert "input MassColumns {" in sdl
    assert "  mass: MassFeatures\n" in sdl
    assert "  penguins: PenguinsFeatures\n" in sdl
    assert "flipperLengthMm: Float" in sdl[sdl.index("input MassFeatures") :]


def test_activation_rejects_other_features(registry: RunningService, tmp_path):
    other = train_elsewhere(tmp_path / "other.cbm", ["island", "bill_depth_mm"], 10)
    imported = run_cli(registry.env, "import-model", str(other), "--name", "mass")
    assert imported.returncode == 0, imported.stderr
    admin = registry.login("admin")

    rejected = registry.execute(
        'mutation { activateModelVersion(name: "mass", version: "2") '
        "{ activeVersion } }",
        token=admin,
    )
    assert rejected.codes() == ["BAD_USER_INPUT"]
    assert "restart" in rejected.errors[0]["message"]
    row = {"island": "Dream", "flipperLengthMm": 190.0}
    still = registry.execute(MASS_PREDICT, {"input": {"mass": row}}, token=admin)
    assert still.data["predict"]["modelVersion"] == "1"


@pytest.mark.parametrize(
    ("content", "arguments", "message"),
    [
        pytest.param(b"not a model", ("--name", "junk"), "not a CatBoost", id="junk"),
        pytest.param(None, ("--name", "Bad-Name"), "lowercase", id="bad-name"),
        pytest.param(
            None,
            ("--name", "typo", "--metadata", "{typo}"),
            "no feature 'islnd'",
            id="unknown-feature",
        ),
    ],
)
def test_import_rejects_unservable_models(
    registry: RunningService, tmp_path, content, arguments, message
):
    path = tmp_path / "model.cbm"
    if content is None:
        train_elsewhere(path, ["island", "flipper_length_mm"], 5)
    else:
        path.write_bytes(content)
    overrides = tmp_path / "overrides.json"
    overrides.write_text(json.dumps({"features": {"islnd": {}}}), encoding="utf-8")
    arguments = tuple(a.replace("{typo}", str(overrides)) for a in arguments)
    result = run_cli(registry.env, "import-model", str(path), *arguments)
    assert result.returncode == 1
    assert message in result.stderr
    model_dir = Path(registry.env["FIELDGUARD_MODEL_DIR"])
    assert not (model_dir / arguments[1]).exists() or not any(
        (model_dir / arguments[1]).iterdir()
    )
