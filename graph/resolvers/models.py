"""The model registry: versions, metadata, activation and rollback."""

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from graph.auditing import AuditNote, audited
from graph.context import Context
from graph.permissions import requires
from ml.errors import ModelUnavailable
from ml.metadata import ModelMetadata, graphql_field_name
from ml.registry import (
    activate,
    active_version,
    list_models,
    list_versions,
)
from schema.catalogue import Permission
from schema.errors import InvalidInput, NotFound


@strawberry.type(description="One trained version of a model.")
class ModelVersion:
    version: str = strawberry.field(extensions=requires(Permission.MODELS_READ))
    active: bool = strawberry.field(extensions=requires(Permission.MODELS_READ))
    trained_at: str = strawberry.field(extensions=requires(Permission.MODELS_READ))
    task: str = strawberry.field(
        extensions=requires(Permission.MODELS_READ),
        description="`classification` or `regression`.",
    )
    target: str = strawberry.field(
        extensions=requires(Permission.MODELS_READ),
        description="What the model predicts.",
    )
    source: str = strawberry.field(
        extensions=requires(Permission.MODELS_READ),
        description="`trained` by fieldguard or `imported` from a model file.",
    )
    training_data: str = strawberry.field(
        extensions=requires(Permission.MODELS_READ),
        description="Where the training data came from and how it was split.",
    )
    training_rows: int = strawberry.field(extensions=requires(Permission.MODELS_READ))
    test_rows: int = strawberry.field(extensions=requires(Permission.MODELS_READ))
    classes: list[str] = strawberry.field(
        extensions=requires(Permission.MODELS_READ),
        description="The classes, in output order; empty for regression.",
    )
    features: JSON = strawberry.field(
        extensions=requires(Permission.MODELS_READ),
        description=(
            "Each feature with its input field name, kind, whether it is "
            "required, its categories and what an unseen one does (`reject` or "
            "`model`), or its accepted range."
        ),
    )
    metrics: JSON = strawberry.field(
        extensions=requires(Permission.MODELS_READ),
        description="Held-out metrics, such as accuracy.",
    )

    @classmethod
    def from_metadata(cls, metadata: ModelMetadata, *, active: bool) -> "ModelVersion":
        return cls(
            version=metadata.version,
            active=active,
            trained_at=metadata.trained_at,
            task=metadata.task,
            target=metadata.target,
            source=metadata.source,
            training_data=metadata.training_data,
            training_rows=metadata.training_rows,
            test_rows=metadata.test_rows,
            classes=list(metadata.classes),
            features=[
                {
                    "name": spec.name,
                    "field": graphql_field_name(spec.name),
                    "kind": spec.kind,
                    "description": spec.description,
                    "required": spec.required,
                    "categories": list(spec.categories),
                    "unseen": spec.unseen if spec.kind == "categorical" else None,
                    "minimum": spec.minimum,
                    "maximum": spec.maximum,
                }
                for spec in metadata.features
            ],
            metrics=dict(metadata.metrics),
        )


@strawberry.type(description="A model and its versions.")
class Model:
    name: str = strawberry.field(extensions=requires(Permission.MODELS_READ))
    served: bool = strawberry.field(
        extensions=requires(Permission.MODELS_READ),
        description=(
            "Whether predict can use it; a model added after the service "
            "started is served from its next start."
        ),
    )
    active_version: str | None = strawberry.field(
        extensions=requires(Permission.MODELS_READ),
        description="The version serving predictions.",
    )
    versions: list[ModelVersion] = strawberry.field(
        extensions=requires(Permission.MODELS_READ), description="Oldest first."
    )


def _describe(info: Info[Context, None], name: str) -> Model:
    services = info.context.services
    model_dir = services.settings.resolved_model_dir
    versions = list_versions(model_dir, name)
    if not versions:
        raise NotFound(f"No model named {name!r}.")
    holder = services.models.holders.get(name)
    active = (
        holder.current().metadata.version
        if holder is not None
        else active_version(model_dir, name) or versions[-1].version
    )
    return Model(
        name=name,
        served=holder is not None,
        active_version=active,
        versions=[
            ModelVersion.from_metadata(meta, active=meta.version == active)
            for meta in versions
        ],
    )


@strawberry.type
class ModelQuery:
    @strawberry.field(
        extensions=requires(Permission.MODELS_READ),
        description="Every model in the model folder.",
    )
    def models(self, info: Info[Context, None]) -> list[Model]:
        model_dir = info.context.services.settings.resolved_model_dir
        return [_describe(info, name) for name in list_models(model_dir)]

    @strawberry.field(extensions=requires(Permission.MODELS_READ))
    def model(self, info: Info[Context, None], name: str) -> Model | None:
        return _describe(info, name)


async def _activate(
    info: Info[Context, None], name: str, version: str, action: str
) -> Model:
    services = info.context.services
    holder = services.models.holders.get(name)
    if holder is None:
        raise InvalidInput("name", f"no served model is named {name!r}.")

    async def change(session, note: AuditNote) -> Model:  # type: ignore[no-untyped-def]
        previous = holder.current().metadata.version
        model_dir = services.settings.resolved_model_dir
        try:
            loaded = activate(model_dir, name, version, accept=holder.check)
        except ModelUnavailable as error:
            raise InvalidInput("version", str(error)) from error
        holder.replace(loaded)
        note.details.update(previous=previous, version=version)
        return _describe(info, name)

    return await audited(
        info.context, action=action, target_type="model", target_id=name, change=change
    )


@strawberry.type
class ModelMutation:
    @strawberry.mutation(
        extensions=requires(Permission.MODELS_WRITE),
        description=(
            "Serve another version of a model. It must load and predict a sample "
            "row first; otherwise the active version stays. Requests in flight "
            "finish on the version they started with."
        ),
    )
    async def activate_model_version(
        self, info: Info[Context, None], name: str, version: str
    ) -> Model:
        return await _activate(info, name, version, "model.activate")

    @strawberry.mutation(
        extensions=requires(Permission.MODELS_WRITE),
        description="Serve the newest version older than the active one.",
    )
    async def rollback_model(self, info: Info[Context, None], name: str) -> Model:
        services = info.context.services
        current = int(services.models.holder(name).current().metadata.version)
        older = [
            int(meta.version)
            for meta in list_versions(services.settings.resolved_model_dir, name)
            if int(meta.version) < current
        ]
        if not older:
            raise InvalidInput("name", "there is no older version to roll back to.")
        return await _activate(info, name, str(max(older)), "model.rollback")
