"""Metadata stored beside each model file."""

import json
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Literal

FeatureKind = Literal["numeric", "categorical"]
Task = Literal["classification", "regression"]
# The handling of a categorical value never seen in training. `reject` fails
# the row with an error naming the feature. `model` passes the value to
# CatBoost, which scores it as a category with no training rows.
UnseenPolicy = Literal["reject", "model"]

MODEL_NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,47}")


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """One input feature of a model.

    Attributes:
        name: Column name used at training.
        kind: `numeric` or `categorical`.
        description: What the feature measures, with its unit.
        categories: Values seen in training (categorical features only).
        unseen: What a categorical value outside `categories` does.
        required: A row without this feature is refused; otherwise a missing
            value goes to the model as missing.
        minimum: Smallest value accepted, exclusive (numeric features only).
        maximum: Largest value accepted, inclusive (numeric features only).
    """

    name: str
    kind: FeatureKind
    description: str = ""
    categories: tuple[str, ...] = ()
    unseen: UnseenPolicy = "reject"
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None


@dataclass(frozen=True, slots=True)
class ModelShape:
    """A model's name, task and features: (name, kind, description) each."""

    name: str
    task: Task
    features: tuple[tuple[str, FeatureKind, str], ...]


@dataclass(frozen=True, slots=True)
class ModelMetadata:
    """Description of one model version: task, features, classes and metrics."""

    name: str
    version: str
    target: str
    classes: tuple[str, ...]
    features: tuple[FeatureSpec, ...]
    # Categorical value that stands for "missing", at training and serving
    # alike, because CatBoost rejects NaN in a categorical column.
    missing_category: str
    task: Task = "classification"
    metrics: dict[str, float] = field(default_factory=dict)
    trained_at: str = ""
    training_rows: int = 0
    test_rows: int = 0
    training_data: str = ""
    source: Literal["trained", "imported"] = "trained"
    catboost_version: str = ""

    @property
    def shape(self) -> "ModelShape":
        """What the GraphQL types of the model are built from.

        Versions of equal shape can replace each other in a running service;
        others need a restart, which rebuilds the schema.
        """
        return ModelShape(
            name=self.name,
            task=self.task,
            features=tuple(
                (spec.name, spec.kind, spec.description) for spec in self.features
            ),
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelMetadata":
        raw = json.loads(text)
        if not isinstance(raw, dict) or not isinstance(raw.get("features"), list):
            raise ValueError("metadata must be an object with a list of features")
        feature_keys = {f.name for f in fields(FeatureSpec)}
        features = tuple(
            FeatureSpec(
                **{
                    **{k: v for k, v in spec.items() if k in feature_keys},
                    "categories": tuple(spec.get("categories", ())),
                }
            )
            for spec in raw.pop("features")
        )
        model_keys = {f.name for f in fields(cls)}
        raw = {k: v for k, v in raw.items() if k in model_keys}
        metadata = cls(
            **{**raw, "classes": tuple(raw.get("classes", ())), "features": features}
        )
        metadata.check()
        return metadata

    @classmethod
    def read(cls, path: Path) -> "ModelMetadata":
        return cls.from_json(path.read_text(encoding="utf-8"))

    def check(self) -> None:
        """Raise ValueError when the metadata cannot describe a served model."""
        if not MODEL_NAME_PATTERN.fullmatch(self.name):
            raise ValueError(
                f"model name {self.name!r} must be 1 to 48 lowercase letters, "
                "digits and underscores, starting with a letter"
            )
        if self.task not in ("classification", "regression"):
            raise ValueError(
                f"task must be classification or regression: {self.task!r}"
            )
        if self.task == "classification" and len(self.classes) < 2:
            raise ValueError("a classification model needs at least two classes")
        if not self.features:
            raise ValueError("a model needs at least one feature")
        seen: dict[str, str] = {}
        for spec in self.features:
            if spec.kind not in ("numeric", "categorical"):
                raise ValueError(
                    f"feature {spec.name!r} has unknown kind {spec.kind!r}"
                )
            if spec.unseen not in ("reject", "model"):
                raise ValueError(
                    f"feature {spec.name!r}: unseen must be reject or model"
                )
            if spec.kind == "categorical" and spec.unseen == "reject":
                if not spec.categories:
                    raise ValueError(
                        f"feature {spec.name!r} rejects unseen values "
                        "but lists no categories"
                    )
            field_name = graphql_field_name(spec.name)
            if field_name in seen:
                raise ValueError(
                    f"features {seen[field_name]!r} and {spec.name!r} both become "
                    f"the GraphQL field {field_name!r}; rename one"
                )
            seen[field_name] = spec.name


def graphql_field_name(feature: str) -> str:
    """Return the GraphQL field name of a feature: camelCase, letters and digits.

    `bill_length_mm` becomes `billLengthMm`; `petal length (cm)` becomes
    `petalLengthCm`; a name starting with a digit gets an `f` in front.
    """
    words = [w for w in re.split(r"[^0-9A-Za-z]+", feature) if w]
    if not words:
        words = ["feature"]
    name = (
        words[0][:1].lower()
        + words[0][1:]
        + "".join(w[:1].upper() + w[1:] for w in words[1:])
    )
    return name if name[0].isalpha() else "f" + name


def graphql_type_prefix(model_name: str) -> str:
    """Return the prefix of a model's GraphQL type names: `penguins` -> `Penguins`."""
    return "".join(w.capitalize() for w in model_name.split("_") if w)
