"""Model registry over the model folder.

Layout: `<model_dir>/<name>/<version>/model.cbm` with `metadata.json` beside
it. Versions are whole numbers; the highest one is served.
"""

import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import catboost

from ml.errors import ModelUnavailable
from ml.metadata import ModelMetadata

logger = logging.getLogger(__name__)

MODEL_FILE = "model.cbm"
METADATA_FILE = "metadata.json"


def _versions(model_dir: Path, name: str) -> list[int]:
    folder = model_dir / name
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit())


def next_version_dir(model_dir: Path, name: str) -> Path:
    """Return the folder for a new version of model `name` (not created yet)."""
    versions = _versions(model_dir, name)
    return model_dir / name / str((versions[-1] + 1) if versions else 1)


def latest_version_dir(model_dir: Path, name: str) -> Path | None:
    versions = _versions(model_dir, name)
    return model_dir / name / str(versions[-1]) if versions else None


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """A model version in memory, ready to predict.

    The feature lists are worked out once here rather than on every request.
    """

    metadata: ModelMetadata
    model: catboost.CatBoost
    directory: Path
    feature_names: list[str] = field(init=False)
    numeric_indices: list[int] = field(init=False)
    categorical_indices: list[int] = field(init=False)
    classes: list[str] = field(init=False)

    def __post_init__(self) -> None:
        features = self.metadata.features
        set_field = object.__setattr__
        set_field(self, "feature_names", [spec.name for spec in features])
        set_field(
            self,
            "numeric_indices",
            [i for i, spec in enumerate(features) if spec.kind == "numeric"],
        )
        set_field(
            self,
            "categorical_indices",
            [i for i, spec in enumerate(features) if spec.kind == "categorical"],
        )
        set_field(self, "classes", list(self.metadata.classes))


ACTIVE_FILE = "ACTIVE"


def active_version(model_dir: Path, name: str) -> str | None:
    """Return the version named in the model's ACTIVE file, if there is one."""
    try:
        text = (model_dir / name / ACTIVE_FILE).read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    return text or None


def active_marker(model_dir: Path, name: str) -> float:
    """Return the ACTIVE file's modification time, 0 without one."""
    try:
        return (model_dir / name / ACTIVE_FILE).stat().st_mtime_ns / 1e9
    except FileNotFoundError:
        return 0.0


def list_versions(model_dir: Path, name: str) -> list[ModelMetadata]:
    """Return the metadata of every readable version, oldest first."""
    found = []
    for version in _versions(model_dir, name):
        try:
            found.append(
                ModelMetadata.read(model_dir / name / str(version) / METADATA_FILE)
            )
        except (OSError, ValueError, KeyError, TypeError):
            logger.warning("Skipping unreadable model %s version %s", name, version)
    return found


def list_models(model_dir: Path) -> list[str]:
    if not model_dir.is_dir():
        return []
    return sorted(
        p.name
        for p in model_dir.iterdir()
        if p.is_dir() and _versions(model_dir, p.name)
    )


def load_active(model_dir: Path, name: str) -> LoadedModel:
    """Load the active version of a model: the one ACTIVE names, else the newest.

    Raises:
        ModelUnavailable: As `load_version`.
    """
    version = active_version(model_dir, name)
    if version is None:
        return load_latest(model_dir, name)
    return load_version(model_dir, name, version)


def activate(
    model_dir: Path,
    name: str,
    version: str,
    accept: Callable[[LoadedModel], None] | None = None,
) -> LoadedModel:
    """Make `version` the active one, after checking that it loads and predicts.

    `accept`, when given, may refuse the loaded version by raising
    ModelUnavailable before anything changes.

    The ACTIVE file is replaced atomically, so a process reading it sees the
    old or the new version, never a partial name.

    Raises:
        ModelUnavailable: The version is missing or broken; the active one
            stays as it was.
    """
    loaded = load_version(model_dir, name, version)
    if accept is not None:
        accept(loaded)
    target = model_dir / name / ACTIVE_FILE
    temporary = target.with_name(f".{ACTIVE_FILE}.{os.getpid()}")
    temporary.write_text(version, encoding="ascii")
    os.replace(temporary, target)
    logger.info("Activated model %s version %s", name, version)
    return loaded


def load_latest(model_dir: Path, name: str) -> LoadedModel:
    """Load the newest version of model `name` and check that it predicts.

    Raises:
        ModelUnavailable: No version exists, or the newest one cannot be read
            or fails to predict a sample row. The message names the folder and
            how to fix it.
    """
    directory = latest_version_dir(model_dir, name)
    if directory is None:
        raise ModelUnavailable(
            f"No model {name!r} found under {model_dir}. "
            "Train one with `fieldguard train`."
        )
    return load_version(model_dir, name, directory.name)


def load_version(model_dir: Path, name: str, version: str) -> LoadedModel:
    """Load one version of a model and check that it predicts a sample row.

    Raises:
        ModelUnavailable: The version does not exist, cannot be read, or
            fails to predict.
    """
    if not version.isascii() or not version.isdigit() or len(version) > 9:
        raise ModelUnavailable(f"Model {name!r} has no version {version!r}.")
    directory = model_dir / name / version
    if not directory.is_dir():
        raise ModelUnavailable(f"Model {name!r} has no version {version!r}.")
    try:
        metadata = ModelMetadata.read(directory / METADATA_FILE)
        model: catboost.CatBoost = (
            catboost.CatBoostRegressor()
            if metadata.task == "regression"
            else catboost.CatBoostClassifier()
        )
        model.load_model(str(directory / MODEL_FILE))
        check_model_matches(model, metadata)
    except (OSError, ValueError, KeyError, TypeError, catboost.CatBoostError) as error:
        raise ModelUnavailable(
            f"Model {name!r} version {directory.name} in {directory} is missing "
            f"or broken ({type(error).__name__}: {error}). "
            "Train a new version with `fieldguard train`."
        ) from error

    loaded = LoadedModel(metadata=metadata, model=model, directory=directory)
    _check_answers(loaded)
    logger.info("Loaded model %s version %s from %s", name, metadata.version, directory)
    return loaded


def check_model_matches(model: catboost.CatBoost, metadata: ModelMetadata) -> None:
    """Raise ValueError when the model file and its metadata disagree."""
    names = list(model.feature_names_ or [])
    expected = [spec.name for spec in metadata.features]
    if names != expected:
        raise ValueError(f"the model's features {names} differ from the metadata's")
    categorical = set(model.get_cat_feature_indices())
    declared = {
        i for i, spec in enumerate(metadata.features) if spec.kind == "categorical"
    }
    if categorical != declared:
        raise ValueError("the model's categorical features differ from the metadata's")
    if metadata.task == "classification":
        classes = [str(label) for label in model.classes_]
        if classes != list(metadata.classes):
            raise ValueError(
                f"the model's classes {classes} differ from the metadata's"
            )


def sample_row(metadata: ModelMetadata) -> dict[str, object]:
    """Return a row that every valid model accepts: one plausible number."""
    sample: dict[str, object] = {spec.name: None for spec in metadata.features}
    for spec in metadata.features:
        if spec.kind == "numeric":
            low = spec.minimum if spec.minimum is not None else 0.0
            high = spec.maximum if spec.maximum is not None else low + 2.0
            sample[spec.name] = (low + high) / 2
        elif spec.categories:
            sample[spec.name] = spec.categories[0]
        elif spec.required:
            sample[spec.name] = "a"
    return sample


def _check_answers(loaded: LoadedModel) -> None:
    from ml.predict import predict_rows

    try:
        result = predict_rows(loaded, [sample_row(loaded.metadata)])[0]
    except Exception as error:  # noqa: BLE001 - any failure means unusable
        raise ModelUnavailable(
            f"Model {loaded.metadata.name!r} version {loaded.metadata.version} "
            f"failed to predict a sample row ({type(error).__name__}: {error})."
        ) from error
    if result.probabilities is not None:
        total = sum(result.probabilities.values())
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ModelUnavailable(
                f"Model {loaded.metadata.name!r} version {loaded.metadata.version} "
                f"returned probabilities summing to {total}."
            )
    elif result.value is None or not math.isfinite(result.value):
        raise ModelUnavailable(
            f"Model {loaded.metadata.name!r} version {loaded.metadata.version} "
            f"returned {result.value!r} for a sample row."
        )


def active_metadata(model_dir: Path, name: str) -> ModelMetadata:
    """Read the metadata of a model's active version without loading the model.

    Raises:
        ModelUnavailable: The version or its metadata is missing or unreadable.
    """
    version = active_version(model_dir, name)
    if version is None:
        directory = latest_version_dir(model_dir, name)
        if directory is None:
            raise ModelUnavailable(f"No model {name!r} found under {model_dir}.")
        version = directory.name
    try:
        return ModelMetadata.read(model_dir / name / version / METADATA_FILE)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ModelUnavailable(
            f"Model {name!r} version {version} has unreadable metadata "
            f"({type(error).__name__}: {error})."
        ) from error


def load_all(model_dir: Path) -> dict[str, LoadedModel]:
    """Load the active version of every model in the folder.

    Raises:
        ModelUnavailable: The folder contains no model, or one of them cannot
            be loaded; the message names it.
    """
    names = list_models(model_dir)
    if not names:
        raise ModelUnavailable(
            f"No model found under {model_dir}. Train one with `fieldguard train` "
            "or register one with `fieldguard import-model`."
        )
    return {name: load_active(model_dir, name) for name in names}
