"""Training of the bundled penguin species classifier."""

import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import catboost
import numpy as np
import pandas as pd
from palmerpenguins import load_penguins

from ml.metadata import FeatureSpec, ModelMetadata, ModelShape
from ml.registry import next_version_dir

logger = logging.getLogger(__name__)

MODEL_NAME = "penguins"
TARGET = "species"
MISSING_CATEGORY = "missing"
# Numeric inputs above this multiple of the largest training value are
# rejected as implausible rather than extrapolated.
MAXIMUM_FACTOR = 3.0

FEATURE_DESCRIPTIONS = {
    "island": "Island in the Palmer Archipelago where the penguin was seen.",
    "sex": "Sex of the penguin.",
    "bill_length_mm": "Bill length in millimetres.",
    "bill_depth_mm": "Bill depth in millimetres.",
    "flipper_length_mm": "Flipper length in millimetres.",
    "body_mass_g": "Body mass in grams.",
}
CATEGORICAL_FEATURES = ("island", "sex")
NUMERIC_FEATURES = (
    "bill_length_mm",
    "bill_depth_mm",
    "flipper_length_mm",
    "body_mass_g",
)
FEATURES = CATEGORICAL_FEATURES + NUMERIC_FEATURES
TRAINING_DATA = (
    "Palmer Archipelago penguins (palmerpenguins package, 344 birds of three "
    "species, 2007-2009); four fifths for training, each repeated with 30% of "
    "values blanked, one fifth held out."
)


def penguins_shape() -> ModelShape:
    """Return the GraphQL shape of the bundled model, known without training it."""
    return ModelShape(
        name=MODEL_NAME,
        task="classification",
        features=tuple(
            (
                name,
                "categorical" if name in CATEGORICAL_FEATURES else "numeric",
                FEATURE_DESCRIPTIONS[name],
            )
            for name in FEATURES
        ),
    )


# Each training row is repeated this many times with features blanked at
# random, so that the model learns to predict from partial measurements. The
# data set itself has almost no missing values to learn that from.
MASKED_COPIES = 3
MASK_PROBABILITY = 0.3


@dataclass(frozen=True, slots=True)
class TrainingResult:
    directory: Path
    metadata: ModelMetadata


def load_training_frame() -> pd.DataFrame:
    """Load the penguins data set with missing categories made explicit."""
    frame = load_penguins()
    frame = frame.dropna(subset=[TARGET]).reset_index(drop=True)
    for column in CATEGORICAL_FEATURES:
        frame[column] = frame[column].astype("object").fillna(MISSING_CATEGORY)
        frame[column] = frame[column].astype(str)
    for column in NUMERIC_FEATURES:
        frame[column] = frame[column].astype(float)
    return frame


def stratified_split(
    labels: pd.Series, *, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return train and test row indices with each class split in proportion."""
    rng = np.random.default_rng(seed)
    train: list[int] = []
    test: list[int] = []
    for _, group in labels.groupby(labels):
        indices = rng.permutation(group.index.to_numpy())
        cut = max(1, round(len(indices) * test_fraction))
        test.extend(indices[:cut])
        train.extend(indices[cut:])
    return np.sort(np.array(train)), np.sort(np.array(test))


def with_masked_copies(
    frame: pd.DataFrame, *, copies: int, probability: float, seed: int
) -> pd.DataFrame:
    """Append copies of `frame` with each feature blanked at `probability`."""
    rng = np.random.default_rng(seed)
    parts = [frame]
    for _ in range(copies):
        masked = frame.copy()
        for column in FEATURES:
            blank = rng.random(len(masked)) < probability
            masked.loc[blank, column] = (
                MISSING_CATEGORY if column in CATEGORICAL_FEATURES else np.nan
            )
        parts.append(masked)
    return pd.concat(parts, ignore_index=True)


def _feature_specs(frame: pd.DataFrame) -> tuple[FeatureSpec, ...]:
    specs = []
    for column in FEATURES:
        if column in CATEGORICAL_FEATURES:
            observed = sorted(set(frame[column]) - {MISSING_CATEGORY})
            specs.append(
                FeatureSpec(
                    name=column,
                    kind="categorical",
                    description=FEATURE_DESCRIPTIONS[column],
                    categories=tuple(observed),
                )
            )
        else:
            largest = float(frame[column].max())
            specs.append(
                FeatureSpec(
                    name=column,
                    kind="numeric",
                    description=FEATURE_DESCRIPTIONS[column],
                    minimum=0.0,
                    maximum=float(math.ceil(largest * MAXIMUM_FACTOR)),
                )
            )
    return tuple(specs)


def _accuracy(model: catboost.CatBoostClassifier, frame: pd.DataFrame) -> float:
    pool = catboost.Pool(frame[list(FEATURES)], cat_features=list(CATEGORICAL_FEATURES))
    predicted = model.predict(pool).reshape(-1)
    return float(np.mean(predicted == frame[TARGET].to_numpy()))


def train_penguins(
    model_dir: Path,
    *,
    iterations: int = 300,
    seed: int = 0,
    thread_count: int = -1,
) -> TrainingResult:
    """Train a species classifier and save it as a new version under `model_dir`.

    Returns:
        The folder of the new version and its metadata, which includes the
        accuracy on a held-out fifth of the data, as it is and with 30% of
        its values blanked.
    """
    frame = load_training_frame()
    train_idx, test_idx = stratified_split(frame[TARGET], test_fraction=0.2, seed=seed)
    features = list(FEATURES)
    training = with_masked_copies(
        frame.loc[train_idx],
        copies=MASKED_COPIES,
        probability=MASK_PROBABILITY,
        seed=seed,
    )
    train_pool = catboost.Pool(
        training[features],
        label=training[TARGET],
        cat_features=list(CATEGORICAL_FEATURES),
    )
    test_frame = frame.loc[test_idx]
    masked_test = with_masked_copies(
        test_frame, copies=1, probability=MASK_PROBABILITY, seed=seed + 1
    ).iloc[len(test_frame) :]
    model = catboost.CatBoostClassifier(
        iterations=iterations,
        depth=4,
        learning_rate=0.1,
        loss_function="MultiClass",
        random_seed=seed,
        thread_count=thread_count,
        allow_writing_files=False,
        verbose=False,
    )
    model.fit(train_pool)
    accuracy = _accuracy(model, test_frame)
    accuracy_with_missing = _accuracy(model, masked_test)

    directory = next_version_dir(model_dir, MODEL_NAME)
    metadata = ModelMetadata(
        name=MODEL_NAME,
        version=directory.name,
        target=TARGET,
        classes=tuple(str(label) for label in model.classes_),
        features=_feature_specs(frame),
        missing_category=MISSING_CATEGORY,
        metrics={
            "accuracy": accuracy,
            "accuracy_with_missing": accuracy_with_missing,
        },
        trained_at=datetime.now(UTC).isoformat(timespec="seconds"),
        training_rows=len(train_idx),
        test_rows=len(test_idx),
        training_data=TRAINING_DATA,
        catboost_version=catboost.__version__,
    )
    directory.mkdir(parents=True)
    model.save_model(str(directory / "model.cbm"))
    (directory / "metadata.json").write_text(metadata.to_json(), encoding="utf-8")
    logger.info(
        "Trained model %s version %s: held-out accuracy %.3f on %d rows, "
        "%.3f with values missing",
        MODEL_NAME,
        metadata.version,
        accuracy,
        len(test_idx),
        accuracy_with_missing,
    )
    return TrainingResult(directory=directory, metadata=metadata)
