"""A hand-written FastAPI REST endpoint serving the same CatBoost model.

bench/serving.py compares fieldguard with this baseline. `POST /predict`
takes one penguin row as a JSON object, verifies an HS256 JWT from the
`Authorization: Bearer` header with PyJWT (signature, `exp`, `iss`, `aud`),
checks that the token's `role` claim grants prediction, and returns the
predicted label and the class probabilities from `predict_proba`.

Run: .venv/bin/python bench/rest_baseline.py --model-folder DIR --port P
with the signing key in REST_BASELINE_JWT_SECRET. DIR is a model version
folder holding model.cbm and metadata.json, such as
`<data dir>/models/penguins/1`.
"""

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import catboost
import jwt
import uvicorn
from fastapi import Depends, FastAPI, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, model_validator

SECRET_VARIABLE = "REST_BASELINE_JWT_SECRET"  # noqa: S105 - a variable name
# Claims every token must carry. PyJWT also checks `exp`, `iss` and `aud`.
REQUIRED_CLAIMS = ["iss", "aud", "sub", "exp", "iat", "role"]
# The same grants as fieldguard's built-in roles, reduced to prediction.
ROLE_PERMISSIONS = {
    "admin": frozenset({"predict:run", "predict:proba"}),
    "analyst": frozenset({"predict:run", "predict:proba"}),
    "viewer": frozenset({"predict:run"}),
}
# The endpoint returns probabilities, so it needs both permissions.
REQUIRED_PERMISSIONS = frozenset({"predict:run", "predict:proba"})


class PenguinRow(BaseModel):
    """Measurements of one penguin. The model handles a missing value.

    The bounds copy those that `fieldguard train` writes to metadata.json.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    island: Literal["Biscoe", "Dream", "Torgersen"] | None = None
    sex: Literal["female", "male"] | None = None
    bill_length_mm: Annotated[float, Field(gt=0, le=179)] | None = None
    bill_depth_mm: Annotated[float, Field(gt=0, le=65)] | None = None
    flipper_length_mm: Annotated[float, Field(gt=0, le=693)] | None = None
    body_mass_g: Annotated[float, Field(gt=0, le=18900)] | None = None

    @model_validator(mode="after")
    def _require_one_feature(self) -> "PenguinRow":
        if all(value is None for value in self.model_dump().values()):
            raise ValueError("at least one feature must be given")
        return self


class ClassProbability(BaseModel):
    label: str
    probability: float


class PredictionResponse(BaseModel):
    label: str
    probabilities: list[ClassProbability]


def load_model(
    folder: Path,
) -> tuple[catboost.CatBoostClassifier, list[dict[str, Any]], str]:
    """Load model.cbm and return it with its feature specs and missing category.

    Raises:
        SystemExit: The metadata's features differ from `PenguinRow`.
    """
    metadata = json.loads((folder / "metadata.json").read_text(encoding="utf-8"))
    features = metadata["features"]
    names = [feature["name"] for feature in features]
    if set(names) != set(PenguinRow.model_fields):
        raise SystemExit(
            f"The model in {folder} has features {names}, but the request body "
            f"has {sorted(PenguinRow.model_fields)}; update PenguinRow."
        )
    model = catboost.CatBoostClassifier()
    model.load_model(str(folder / "model.cbm"))
    return model, features, metadata["missing_category"]


def create_app(
    model_folder: Path, *, secret: str, issuer: str, audience: str
) -> FastAPI:
    """Build the app around one loaded model and one HS256 key."""
    model, features, missing_category = load_model(model_folder)
    classes = [str(label) for label in model.classes_]
    bearer = HTTPBearer(auto_error=False)
    app = FastAPI(title="rest-baseline", docs_url=None, redoc_url=None)

    # `async def` as in fieldguard, because a plain `def` dependency or
    # endpoint would run in the thread pool.
    async def require_prediction_role(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> dict[str, Any]:
        if credentials is None:
            raise HTTPException(401, "A bearer token is required.")
        try:
            claims = jwt.decode(
                credentials.credentials,
                secret,
                algorithms=["HS256"],
                audience=audience,
                issuer=issuer,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.PyJWTError as error:
            raise HTTPException(401, "The token is invalid or expired.") from error
        granted = ROLE_PERMISSIONS.get(claims["role"], frozenset())
        if not REQUIRED_PERMISSIONS <= granted:
            raise HTTPException(403, "The token's role does not grant prediction.")
        return claims

    @app.post("/predict")
    async def predict(
        row: PenguinRow,
        _claims: Annotated[dict[str, Any], Depends(require_prediction_role)],
    ) -> PredictionResponse:
        values: list[object] = []
        for feature in features:
            value = getattr(row, feature["name"])
            if feature["kind"] == "categorical":
                values.append(missing_category if value is None else value)
            else:
                values.append(math.nan if value is None else value)
        probabilities = model.predict_proba([values])[0]
        best = max(range(len(classes)), key=lambda index: probabilities[index])
        return PredictionResponse(
            label=classes[best],
            probabilities=[
                ClassProbability(label=label, probability=float(probability))
                for label, probability in zip(classes, probabilities, strict=True)
            ],
        )

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--model-folder",
        type=Path,
        required=True,
        help="Model version folder holding model.cbm and metadata.json.",
    )
    parser.add_argument("--port", type=int, required=True, help="TCP port to bind.")
    parser.add_argument("--issuer", default="fieldguard", help="Required `iss`.")
    parser.add_argument("--audience", default="fieldguard", help="Required `aud`.")
    args = parser.parse_args()

    secret = os.environ.get(SECRET_VARIABLE)
    if not secret:
        print(
            f"rest_baseline: set {SECRET_VARIABLE} to the HS256 key.", file=sys.stderr
        )
        raise SystemExit(2)

    app = create_app(
        args.model_folder, secret=secret, issuer=args.issuer, audience=args.audience
    )
    # The options of `fieldguard serve`: one worker, uvicorn's automatic
    # choice of event loop and HTTP parser (uvloop and httptools when
    # installed), no access log.
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        log_config=None,
        proxy_headers=False,
        access_log=False,
    )


if __name__ == "__main__":
    main()
