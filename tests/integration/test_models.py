"""The model registry: listing, activation, rollback and refusal of broken versions."""

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from ml.train import MODEL_NAME, train_penguins
from tests.support import (
    RunningService,
    run_cli,
    service_env,
    start_service,
    stop_server,
    strong_password,
)

MODELS = "{ models { name activeVersion versions { version active metrics } } }"
PREDICT = '{ predict(input: {island: "Dream"}) { label modelVersion } }'


@pytest.fixture(scope="module")
def registry(model_dir, tmp_path_factory) -> Iterator[RunningService]:
    """A server with its own model folder holding two versions."""
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
    assert [m["name"] for m in models] == [MODEL_NAME]
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
