"""Registration of CatBoost models trained elsewhere."""

import json
import logging
import shutil
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import catboost

from ml.errors import ModelUnavailable
from ml.metadata import FeatureSpec, ModelMetadata
from ml.registry import METADATA_FILE, MODEL_FILE, load_version, next_version_dir

logger = logging.getLogger(__name__)

CLASSIFICATION_LOSSES = {"Logloss", "CrossEntropy", "MultiClass", "MultiClassOneVsAll"}
REGRESSION_LOSSES = {
    "RMSE",
    "MAE",
    "Quantile",
    "MAPE",
    "Poisson",
    "Tweedie",
    "Huber",
    "Expectile",
    "LogLinQuantile",
    "Lq",
}
# Keys of the optional overrides file, beside `features`.
MODEL_KEYS = {"target", "training_data", "metrics", "missing_category"}
FEATURE_KEYS = {"description", "categories", "unseen", "required", "minimum", "maximum"}


def import_model(
    model_dir: Path,
    model_file: Path,
    name: str,
    overrides: Mapping[str, Any] | None = None,
) -> ModelMetadata:
    """Register a CatBoost model file as a new version of model `name`.

    The file provides the feature names, which features are categorical, the
    loss (hence classification or regression), the classes and the training
    metrics. What it cannot contain comes from `overrides`:
    feature descriptions, allowed categories (CatBoost keeps only their
    hashes), ranges, the target's name and a description of the training
    data. A categorical feature without listed categories passes unseen
    values to the model.

    The new version is checked by loading it and predicting a sample row;
    it is not activated.

    Raises:
        ModelUnavailable: The file is not a usable CatBoost model, the
            overrides do not fit it, or the version fails its check. Nothing
            is left behind.
    """
    overrides = dict(overrides or {})
    try:
        model = catboost.CatBoost()
        model.load_model(str(model_file))
    except (OSError, catboost.CatBoostError) as error:
        raise ModelUnavailable(
            f"{model_file} is not a CatBoost model file ({error})."
        ) from error
    loss = str(model.get_all_params().get("loss_function", ""))
    if loss in CLASSIFICATION_LOSSES:
        classifier = catboost.CatBoostClassifier()
        classifier.load_model(str(model_file))
        task = "classification"
        classes = tuple(str(label) for label in classifier.classes_)
    elif loss in REGRESSION_LOSSES:
        task, classes = "regression", ()
    else:
        raise ModelUnavailable(
            f"{model_file} was trained with the loss {loss!r}; fieldguard serves "
            "classification and regression models."
        )
    names = list(model.feature_names_ or [])
    categorical = set(model.get_cat_feature_indices())
    if model.get_text_feature_indices() or model.get_embedding_feature_indices():
        raise ModelUnavailable(
            f"{model_file} uses text or embedding features, which are not served."
        )
    try:
        metadata = _metadata(model, name, task, classes, names, categorical, overrides)
    except (TypeError, ValueError) as error:
        raise ModelUnavailable(f"Cannot describe the model: {error}") from error

    directory = next_version_dir(model_dir, name)
    directory.mkdir(parents=True)
    try:
        shutil.copyfile(model_file, directory / MODEL_FILE)
        metadata = _with_version(metadata, directory.name)
        (directory / METADATA_FILE).write_text(metadata.to_json(), encoding="utf-8")
        load_version(model_dir, name, directory.name)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        if not any(directory.parent.iterdir()):
            directory.parent.rmdir()
        raise
    logger.info("Imported %s as model %s version %s", model_file, name, directory.name)
    return metadata


def _metadata(
    model: catboost.CatBoost,
    name: str,
    task: str,
    classes: tuple[str, ...],
    names: list[str],
    categorical: set[int],
    overrides: dict[str, Any],
) -> ModelMetadata:
    unknown = set(overrides) - MODEL_KEYS - {"features"}
    if unknown:
        raise ValueError(f"unknown keys in the overrides: {', '.join(sorted(unknown))}")
    per_feature = overrides.get("features", {})
    if not isinstance(per_feature, dict):
        raise ValueError("`features` must map feature names to their settings")
    strays = set(per_feature) - set(names)
    if strays:
        raise ValueError(f"the model has no feature {sorted(strays)[0]!r}")
    specs = []
    for index, feature in enumerate(names):
        given = per_feature.get(feature, {})
        unknown = set(given) - FEATURE_KEYS
        if unknown:
            raise ValueError(
                f"unknown settings for {feature!r}: {', '.join(sorted(unknown))}"
            )
        kind = "categorical" if index in categorical else "numeric"
        categories = tuple(str(value) for value in given.get("categories", ()))
        if kind == "numeric" and categories:
            raise ValueError(f"{feature!r} is numeric; it takes no categories")
        specs.append(
            FeatureSpec(
                name=feature,
                kind=kind,
                description=str(given.get("description", "")),
                categories=categories,
                unseen=given.get("unseen", "reject" if categories else "model"),
                required=bool(given.get("required", False)),
                minimum=given.get("minimum"),
                maximum=given.get("maximum"),
            )
        )
    info = dict(model.get_metadata() or {})
    metadata = ModelMetadata(
        name=name,
        version="0",
        target=str(overrides.get("target", "target")),
        classes=classes,
        features=tuple(specs),
        missing_category=str(overrides.get("missing_category", "")),
        task=task,  # type: ignore[arg-type]
        metrics={**_training_metrics(info), **overrides.get("metrics", {})},
        trained_at=str(info.get("train_finish_time", "")),
        training_data=str(overrides.get("training_data", "")),
        source="imported",
        catboost_version=catboost.__version__,
    )
    metadata.check()
    return metadata


def _training_metrics(info: Mapping[str, str]) -> dict[str, float]:
    """Return the best learn and test errors the model file recorded."""
    try:
        recorded = json.loads(info.get("training", "{}")).get("metrics", {})
    except (ValueError, AttributeError):
        return {}
    found: dict[str, float] = {}
    for key, prefix in (("learn_best_error", "learn"), ("test_best_error", "test")):
        values = recorded.get(key)
        if isinstance(values, dict):
            for metric, value in values.items():
                if isinstance(value, int | float):
                    found[f"{prefix}_{metric}"] = float(value)
    return found


def _with_version(metadata: ModelMetadata, version: str) -> ModelMetadata:
    from dataclasses import replace

    return replace(
        metadata,
        version=version,
        trained_at=metadata.trained_at
        or datetime.now(UTC).isoformat(timespec="seconds"),
    )
