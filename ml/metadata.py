"""Metadata stored beside each model file."""

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

FeatureKind = Literal["numeric", "categorical"]


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """One input feature of a model.

    Attributes:
        name: Column name used at training.
        kind: `numeric` or `categorical`.
        description: What the feature measures, with its unit.
        categories: Values seen in training (categorical features only).
        minimum: Smallest value accepted, exclusive (numeric features only).
        maximum: Largest value accepted, inclusive (numeric features only).
    """

    name: str
    kind: FeatureKind
    description: str = ""
    categories: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None


@dataclass(frozen=True, slots=True)
class ModelMetadata:
    """Description of one model version: features, classes and metrics."""

    name: str
    version: str
    target: str
    classes: tuple[str, ...]
    features: tuple[FeatureSpec, ...]
    # Categorical value that stands for "missing", at training and serving
    # alike, because CatBoost rejects NaN in a categorical column.
    missing_category: str
    metrics: dict[str, float] = field(default_factory=dict)
    trained_at: str = ""
    training_rows: int = 0
    test_rows: int = 0
    catboost_version: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelMetadata":
        raw = json.loads(text)
        features = tuple(
            FeatureSpec(**{**spec, "categories": tuple(spec.get("categories", ()))})
            for spec in raw.pop("features")
        )
        return cls(**{**raw, "classes": tuple(raw["classes"]), "features": features})

    @classmethod
    def read(cls, path: Path) -> "ModelMetadata":
        return cls.from_json(path.read_text(encoding="utf-8"))
