"""Measure what serving a CatBoost prediction through fieldguard costs.

One run trains a model in a temporary data folder and measures, on that
model and the same palmerpenguins rows:

- raw CatBoost `predict_proba` in this process, for 1 and 1,000 rows, with
  three input forms: a list of lists, a `Pool` built from a list of lists
  (with `cat_features` and `feature_names`), and a `Pool` built from
  `FeaturesData` columns;
- a 1,000-item Strawberry list with fieldguard's `requires` rule on every
  field, against the same list without rules, executed in this process;
- fieldguard, started with its own CLI on SQLite with one worker: `predict`
  of one row and `predictBatch` of 1,000 rows under concurrent load (wrk)
  and with one client sending sequential keep-alive requests;
- the hand-written FastAPI REST endpoint of bench/rest_baseline.py under
  the same load and with one client;
- fieldguard's mean rows per model call for one-row `predict`, read from
  its /metrics, since the rows of concurrent requests share a call.

Servers run on 127.0.0.1 only. With taskset and at least two CPUs, the
servers run on the first CPU, and wrk, this process and its in-process
measurements on the second.

Run: .venv/bin/python bench/serving.py [--quick] [--duration S]
     [--connections N] [--rounds N] [--api auto|new|old] [--json PATH]
"""

import argparse
import asyncio
import base64
import gc
import http.client
import importlib.metadata
import json
import math
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import catboost
import jwt
import numpy as np
from palmerpenguins import load_penguins

REPO_ROOT = Path(__file__).resolve().parent.parent
BATCH_ROWS = 1000

# ---------------------------------------------------------------------------
# GraphQL operations. The "new" API takes one `penguins` object (predict) or
# one list per feature (predictBatch). The "old" API takes `PenguinFeatures`
# objects. `--api auto` tries the new shape first.
# ---------------------------------------------------------------------------

NEW_PREDICT_QUERY = (
    "query Predict($input: PredictInput!) { predict(input: $input) "
    "{ label probabilities { label probability } } }"
)
NEW_BATCH_QUERY = (
    "query Batch($input: PredictBatchInput!) { predictBatch(input: $input) "
    "{ labels probabilities { label values } } }"
)
OLD_PREDICT_QUERY = (
    "query Predict($input: PenguinFeatures!) { predict(input: $input) "
    "{ label probabilities { label probability } } }"
)
OLD_BATCH_QUERY = (
    "query Batch($inputs: [PenguinFeatures!]!) { predictBatch(inputs: $inputs) "
    "{ label probabilities { label probability } } }"
)
LOGIN_MUTATION = (
    "mutation Login($u: String!, $p: String!) "
    "{ login(username: $u, password: $p) { accessToken } }"
)

# The one row of every single-row measurement, keyed by model column.
EXAMPLE_ROW: dict[str, object] = {
    "island": "Biscoe",
    "sex": "male",
    "bill_length_mm": 50.1,
    "bill_depth_mm": 15.0,
    "flipper_length_mm": 220.0,
    "body_mass_g": 5500.0,
}


def camel_case(name: str) -> str:
    """Convert a model column name to its GraphQL field name."""
    first, *rest = name.split("_")
    return first + "".join(part.title() for part in rest)


def new_predict_variables(row: dict[str, object]) -> dict[str, Any]:
    return {"input": {"penguins": {camel_case(k): v for k, v in row.items()}}}


def new_batch_variables(rows: list[dict[str, object]]) -> dict[str, Any]:
    columns = {camel_case(name): [row[name] for row in rows] for name in rows[0]}
    return {"input": {"penguins": columns}}


def old_predict_variables(row: dict[str, object]) -> dict[str, Any]:
    return {"input": {camel_case(k): v for k, v in row.items()}}


def old_batch_variables(rows: list[dict[str, object]]) -> dict[str, Any]:
    return {"inputs": [{camel_case(k): v for k, v in row.items()} for row in rows]}


class BenchError(Exception):
    """The benchmark cannot go on. The message names what failed."""


def check_prediction(data: dict[str, Any], classes: list[str]) -> None:
    """Check the `predict` payload of either API."""
    payload = data["predict"]
    if not isinstance(payload.get("label"), str):
        raise BenchError(f"predict returned no label: {payload}")
    if len(payload.get("probabilities") or []) != len(classes):
        raise BenchError(f"predict returned no probability per class: {payload}")


def check_new_batch(data: dict[str, Any], rows: int, classes: list[str]) -> None:
    payload = data["predictBatch"]
    labels = payload.get("labels") or []
    if len(labels) != rows:
        raise BenchError(f"predictBatch returned {len(labels)} labels, not {rows}")
    columns = payload.get("probabilities") or []
    if len(columns) != len(classes) or any(len(c["values"]) != rows for c in columns):
        raise BenchError("predictBatch returned no probability per class and row")


def check_old_batch(data: dict[str, Any], rows: int, classes: list[str]) -> None:
    payload = data["predictBatch"] or []
    if len(payload) != rows:
        raise BenchError(
            f"predictBatch returned {len(payload)} predictions, not {rows}"
        )
    for prediction in payload:
        if len(prediction.get("probabilities") or []) != len(classes):
            raise BenchError(f"a prediction has no probability per class: {prediction}")


@dataclass(frozen=True)
class ApiShape:
    """The operations and variable builders of one version of the API."""

    name: str
    predict_query: str
    batch_query: str
    predict_variables: Callable[[dict[str, object]], dict[str, Any]]
    batch_variables: Callable[[list[dict[str, object]]], dict[str, Any]]
    check_batch: Callable[[dict[str, Any], int, list[str]], None]


API_SHAPES = {
    "new": ApiShape(
        "new",
        NEW_PREDICT_QUERY,
        NEW_BATCH_QUERY,
        new_predict_variables,
        new_batch_variables,
        check_new_batch,
    ),
    "old": ApiShape(
        "old",
        OLD_PREDICT_QUERY,
        OLD_BATCH_QUERY,
        old_predict_variables,
        old_batch_variables,
        check_old_batch,
    ),
}

# ---------------------------------------------------------------------------
# Service settings. Every check the service ships with stays on. Only the
# quota is raised and the password hash made cheap.
# ---------------------------------------------------------------------------

SERVICE_SETTINGS = {
    # Cheap argon2id, as in the tests, so that signing in takes milliseconds.
    "FIELDGUARD_ARGON2_MEMORY_COST_KIB": "64",
    "FIELDGUARD_ARGON2_TIME_COST": "1",
    # The maximum the settings allow, so that no run reaches the quota.
    # NOTE: the in-memory quota keeps one list entry per row counted in the
    # last minute, so its cost per request grows with the rows predicted.
    # Each measurement signs in its own user to start from an empty window.
    "FIELDGUARD_PREDICT_ROWS_PER_MINUTE": "10000000",
}
BENCH_PASSWORD_PREFIX = "bench-pw-"  # noqa: S105 - a prefix, not a password
SERVER_START_TIMEOUT_SECONDS = 60


@dataclass
class Options:
    """Counts and durations of one run, lowered by `--quick`."""

    duration: float
    connections: int
    rounds: int
    warmup: float
    api: str
    env: str
    service_input: str
    catboost_calls_one: int
    catboost_calls_batch: int
    list_runs: int
    one_client_requests: int
    one_client_batch_requests: int
    one_client_seconds: float
    json_path: Path | None
    logs_dir: Path | None


# ---------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------


@dataclass
class Timing:
    """Times of one repeated operation, in milliseconds."""

    count: int
    median_ms: float
    p99_ms: float


def summarize(seconds: list[float]) -> Timing:
    """Return the count, median and nearest-rank 99th percentile of `seconds`."""
    if not seconds:
        raise BenchError("no samples were taken")
    ordered = sorted(seconds)
    p99 = ordered[max(0, math.ceil(len(ordered) * 0.99) - 1)]
    return Timing(len(ordered), statistics.median(ordered) * 1e3, p99 * 1e3)


# ---------------------------------------------------------------------------
# Rows
# ---------------------------------------------------------------------------


def load_rows(feature_names: list[str], count: int) -> list[dict[str, object]]:
    """Return `count` palmerpenguins rows, cycling the data set.

    Missing values are None, which the services receive as JSON null.
    """
    frame = load_penguins()
    records = frame[feature_names].to_dict("records")
    rows = []
    for index in range(count):
        record = records[index % len(records)]
        rows.append({name: _plain(record[name]) for name in feature_names})
    return rows


def _plain(value: object) -> object:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


# ---------------------------------------------------------------------------
# Raw CatBoost
# ---------------------------------------------------------------------------


@dataclass
class ModelFiles:
    """The model version fieldguard serves, with its metadata.json fields."""

    folder: Path
    feature_names: list[str]
    categorical: list[int]
    missing_category: str
    classes: list[str]


def read_model_files(data_dir: Path) -> ModelFiles:
    """Find the newest version under `<data_dir>/models/penguins` and read it."""
    versions = [
        path
        for path in (data_dir / "models" / "penguins").iterdir()
        if path.name.isdigit()
    ]
    if not versions:
        raise BenchError(f"no trained model under {data_dir / 'models'}")
    folder = max(versions, key=lambda path: int(path.name))
    metadata = json.loads((folder / "metadata.json").read_text(encoding="utf-8"))
    features = metadata["features"]
    return ModelFiles(
        folder=folder,
        feature_names=[feature["name"] for feature in features],
        categorical=[
            index
            for index, feature in enumerate(features)
            if feature["kind"] == "categorical"
        ],
        missing_category=metadata["missing_category"],
        classes=[str(label) for label in metadata["classes"]],
    )


CATBOOST_FORMS = {
    "list": "list of lists",
    "pool": "Pool(list of lists, cat_features, feature_names)",
    "features-data": "Pool(FeaturesData) from columns",
}


def detect_service_input() -> str:
    """Return the CatBoost input form that ml/predict.py builds.

    NOTE: this is a text search of ml/predict.py for `FeaturesData` and
    `Pool(`. Pass --service-input when the source does not show it plainly.
    """
    source = (REPO_ROOT / "ml" / "predict.py").read_text(encoding="utf-8")
    if "FeaturesData" in source:
        return "features-data"
    if "Pool(" in source:
        return "pool"
    return "list"


def catboost_inputs(
    model: ModelFiles, rows: list[dict[str, object]]
) -> dict[str, Callable[[], object]]:
    """Build, per input form, a function that returns a fresh model input.

    The list of lists is made once, outside the timing, as a service makes
    it while validating. Building a `Pool`, and the numpy columns of
    `FeaturesData`, is part of each timed call.
    """
    matrix: list[list[object]] = []
    for row in rows:
        values: list[object] = []
        for index, name in enumerate(model.feature_names):
            value = row[name]
            if index in model.categorical:
                values.append(model.missing_category if value is None else value)
            else:
                values.append(math.nan if value is None else value)
        matrix.append(values)
    numeric = [i for i in range(len(model.feature_names)) if i not in model.categorical]
    numeric_columns = [[row[i] for row in matrix] for i in numeric]
    categorical_columns = [[row[i] for row in matrix] for i in model.categorical]
    numeric_names = [model.feature_names[i] for i in numeric]
    categorical_names = [model.feature_names[i] for i in model.categorical]

    def from_columns() -> catboost.Pool:
        return catboost.Pool(
            catboost.FeaturesData(
                num_feature_data=np.array(numeric_columns, dtype=np.float32).T,
                cat_feature_data=np.array(categorical_columns, dtype=object).T,
                num_feature_names=numeric_names,
                cat_feature_names=categorical_names,
            )
        )

    return {
        "list": lambda: matrix,
        "pool": lambda: catboost.Pool(
            matrix,
            cat_features=model.categorical,
            feature_names=model.feature_names,
        ),
        "features-data": from_columns,
    }


def measure_catboost(
    model: ModelFiles,
    example: dict[str, object],
    rows: list[dict[str, object]],
    options: Options,
) -> dict[str, dict[str, Timing]]:
    """Time `predict_proba` per input form for 1 row and for all `rows`.

    The forms are called in turn, so that drift affects them alike, and all
    must return the same probabilities.
    """
    classifier = catboost.CatBoostClassifier()
    classifier.load_model(str(model.folder / "model.cbm"))
    results: dict[str, dict[str, Timing]] = {}
    for label, batch, calls in (
        ("1", [example], options.catboost_calls_one),
        (str(len(rows)), rows, options.catboost_calls_batch),
    ):
        inputs = catboost_inputs(model, batch)
        reference = classifier.predict_proba(inputs["list"]())
        for form, make_input in inputs.items():
            answer = classifier.predict_proba(make_input())
            if not np.allclose(answer, reference, atol=1e-9):
                raise BenchError(f"CatBoost input {form!r} changed the prediction")
        samples: dict[str, list[float]] = {form: [] for form in inputs}
        deadline = time.monotonic() + 30
        for _ in range(calls):
            if time.monotonic() > deadline:
                break
            for form, make_input in inputs.items():
                started = time.perf_counter()
                classifier.predict_proba(make_input())
                samples[form].append(time.perf_counter() - started)
        results[label] = {form: summarize(times) for form, times in samples.items()}
    return results


# ---------------------------------------------------------------------------
# A guarded list against an unguarded one, in-process
# ---------------------------------------------------------------------------

LIST_QUERY = "{ items { id name score active } }"
LIST_ITEMS = 1000


def measure_guarded_list(options: Options) -> dict[str, Timing]:
    """Time `schema.execute` of a 1,000-item list with and without field rules.

    Both schemas are plain Strawberry schemas with no extensions. The guarded
    one puts fieldguard's `requires(predict:run)` on the list field and on
    each of the 4 scalar fields of every item, applied by
    `graph.permissions.guard_schema` as fieldguard's own schema does. The
    context is a `graph.context.Context` whose principal has the permission.
    """
    import strawberry

    from graph.context import Context, Principal
    from graph.permissions import guard_schema, requires
    from schema.catalogue import Permission

    permission = Permission.PREDICT_RUN

    @strawberry.type
    class GuardedItem:
        id: int = strawberry.field(extensions=requires(permission))
        name: str = strawberry.field(extensions=requires(permission))
        score: float = strawberry.field(extensions=requires(permission))
        active: bool = strawberry.field(extensions=requires(permission))

    @strawberry.type
    class PlainItem:
        id: int
        name: str
        score: float
        active: bool

    def item_values(index: int) -> dict[str, Any]:
        return {
            "id": index,
            "name": f"item-{index}",
            "score": index / 7,
            "active": index % 2 == 0,
        }

    guarded_items = [GuardedItem(**item_values(i)) for i in range(LIST_ITEMS)]
    plain_items = [PlainItem(**item_values(i)) for i in range(LIST_ITEMS)]

    @strawberry.type
    class GuardedQuery:
        @strawberry.field(extensions=requires(permission))
        def items(self) -> list[GuardedItem]:
            return guarded_items

    @strawberry.type
    class PlainQuery:
        @strawberry.field
        def items(self) -> list[PlainItem]:
            return plain_items

    class QuietSchema(strawberry.Schema):
        """A schema that does not log errors: the denial check below makes one."""

        def process_errors(
            self, errors: list[Any], execution_context: Any = None
        ) -> None:
            return None

    schemas = {
        "guarded": QuietSchema(query=GuardedQuery),
        "unguarded": QuietSchema(query=PlainQuery),
    }
    guard_schema(schemas["guarded"]._schema)

    def context(permissions: frozenset[str]) -> Context:
        principal = Principal(
            user_id=1,
            username="bench",
            roles=("analyst",),
            permissions=permissions,
        )
        # The rules read only the principal. No resolver here uses services.
        no_services: Any = None
        return Context(services=no_services, request_id="bench", principal=principal)

    allowed = context(frozenset({permission.value}))
    denied = context(frozenset())

    async def run() -> dict[str, Timing]:
        for name, schema in schemas.items():
            result = await schema.execute(LIST_QUERY, context_value=allowed)
            if result.errors or len(result.data["items"]) != LIST_ITEMS:
                raise BenchError(f"the {name} list failed: {result.errors}")
        denied_result = await schemas["guarded"].execute(
            LIST_QUERY, context_value=denied
        )
        if not denied_result.errors:
            raise BenchError("the guarded list was returned without the permission")

        samples: dict[str, list[float]] = {name: [] for name in schemas}
        order = list(schemas)
        deadline = time.monotonic() + 60
        gc.collect()
        for _ in range(options.list_runs):
            if time.monotonic() > deadline:
                break
            for name in order:
                started = time.perf_counter()
                await schemas[name].execute(LIST_QUERY, context_value=allowed)
                samples[name].append(time.perf_counter() - started)
            order.reverse()
        return {name: summarize(times) for name, times in samples.items()}

    return asyncio.run(run())


# ---------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------


@dataclass
class Pinning:
    """The CPUs of the servers and of the clients, None without pinning."""

    server_cpu: int | None
    client_cpu: int | None
    reason: str
    taskset: str | None = None

    def prefix(self, cpu: int | None) -> list[str]:
        if cpu is None or self.taskset is None:
            return []
        return [self.taskset, "-c", str(cpu)]


def choose_pinning() -> Pinning:
    """Put servers on the first allowed CPU and clients on the second."""
    cpus = sorted(os.sched_getaffinity(0))
    taskset = shutil.which("taskset")
    if taskset is None:
        return Pinning(None, None, "not pinned: taskset is not installed")
    if len(cpus) < 2:
        return Pinning(None, None, f"not pinned: only CPU {cpus} is available")
    check = subprocess.run(  # noqa: S603 - a fixed command
        [taskset, "-c", str(cpus[0]), "true"], capture_output=True, check=False
    )
    if check.returncode != 0:
        raise BenchError(f"taskset failed: {check.stderr.decode(errors='replace')}")
    return Pinning(
        cpus[0],
        cpus[1],
        f"servers on CPU {cpus[0]}, clients on CPU {cpus[1]}",
        taskset,
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fieldguard_command(*args: str) -> list[str]:
    """Return the command line of the `fieldguard` CLI of this virtualenv."""
    script = Path(sys.executable).with_name("fieldguard")
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-m", "graph", *args]


def service_environment(data_dir: Path, mode: str) -> dict[str, str]:
    """Return the environment of the fieldguard commands, with fresh secrets."""
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("FIELDGUARD_") and key != "PROMETHEUS_MULTIPROC_DIR"
    }
    environment.update(SERVICE_SETTINGS)
    environment.update(
        {
            "FIELDGUARD_ENV": mode,
            "FIELDGUARD_DATA_DIR": str(data_dir),
            "FIELDGUARD_JWT_SECRET": secrets.token_urlsafe(48),
            "FIELDGUARD_DATA_KEYS": "bench:"
            + base64.b64encode(secrets.token_bytes(32)).decode(),
            "FIELDGUARD_DATA_INDEX_KEY": base64.b64encode(
                secrets.token_bytes(32)
            ).decode(),
            "FIELDGUARD_METRICS_TOKEN": secrets.token_urlsafe(24),
        }
    )
    return environment


def run_cli(environment: dict[str, str], *args: str, stdin: str = "") -> str:
    """Run one `fieldguard` command and return its output.

    Raises:
        BenchError: The command failed or ran longer than 180 seconds.
    """
    try:
        completed = subprocess.run(  # noqa: S603 - this virtualenv's fieldguard
            fieldguard_command(*args),
            env=environment,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
            cwd=REPO_ROOT,
        )
    except subprocess.TimeoutExpired as error:
        raise BenchError(f"`fieldguard {' '.join(args)}` timed out") from error
    if completed.returncode != 0:
        raise BenchError(
            f"`fieldguard {' '.join(args)}` failed with exit code "
            f"{completed.returncode}:\n{completed.stderr}"
        )
    return completed.stdout


_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception)\b")


@dataclass
class Server:
    """A server process started by this benchmark."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def error_lines(self) -> list[str]:
        """Return the log records at level ERROR or CRITICAL, one line each.

        A JSON record becomes its message and the last line of its exception.
        """
        pattern = re.compile(r'"level": "(ERROR|CRITICAL)"| (ERROR|CRITICAL) ')
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        found = []
        for line in text.splitlines():
            if not pattern.search(line):
                continue
            try:
                record = json.loads(line)
            except ValueError:
                found.append(line)
                continue
            # The line naming the exception, such as "sqlalchemy.exc.
            # OperationalError: ...", and not the SQL lines that follow it.
            named = [
                text
                for text in str(record.get("exception", "")).splitlines()
                if _EXCEPTION_LINE.match(text)
            ]
            found.append(
                f"{record.get('time')} {record.get('message')}: "
                f"{named[-1] if named else ''}"
            )
        return found


def start_server(
    name: str,
    command: list[str],
    environment: dict[str, str],
    port: int,
    log_path: Path,
    servers: list[Server],
) -> Server:
    """Start a server, add it to `servers` and wait until its port accepts.

    uvicorn (0.55 here) runs the app's start-up before it binds the port, so
    an open port means the app is ready.

    Raises:
        BenchError: The process exited or the port stayed closed for
            SERVER_START_TIMEOUT_SECONDS.
    """
    with log_path.open("ab") as log:
        process = subprocess.Popen(  # noqa: S603 - commands built in this file
            command,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
        )
    server = Server(name, process, port, log_path)
    servers.append(server)
    deadline = time.monotonic() + SERVER_START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(
                f"{name} exited with code {process.returncode} at start:\n"
                f"{server.log_tail()}"
            )
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            time.sleep(0.2)
            continue
        return server
    raise BenchError(f"{name} did not open port {port} within the start timeout")


def stop_server(server: Server) -> None:
    """Stop a server with SIGTERM, then SIGKILL after 15 seconds."""
    if server.process.poll() is not None:
        return
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout=15)


# ---------------------------------------------------------------------------
# HTTP clients
# ---------------------------------------------------------------------------


@dataclass
class Endpoint:
    """One HTTP request to measure: the same body and headers every time."""

    name: str
    port: int
    path: str
    body: bytes
    headers: dict[str, str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"


def post(port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    """Send one POST to 127.0.0.1 and return the body of a 200 response.

    Raises:
        BenchError: The status was not 200.
    """
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        data = response.read()
    finally:
        connection.close()
    if response.status != 200:
        raise BenchError(f"POST {path} returned HTTP {response.status}: {data[:500]!r}")
    return data


_CALL_ROWS = re.compile(
    r"^fieldguard_prediction_call_rows_(sum|count)\{[^}]*\} (\S+)$", re.MULTILINE
)


def model_call_rows(port: int, token: str) -> tuple[float, float] | None:
    """Return the rows and the model calls of fieldguard's one-row predictions
    so far, from /metrics, or None when the service does not report them."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request(
            "GET", "/metrics", headers={"Authorization": f"Bearer {token}"}
        )
        response = connection.getresponse()
        text = response.read().decode()
    finally:
        connection.close()
    found = _CALL_ROWS.findall(text) if response.status == 200 else []
    if not found:
        return None
    totals = {"sum": 0.0, "count": 0.0}
    for kind, value in found:
        totals[kind] += float(value)
    return totals["sum"], totals["count"]


def rows_per_call(
    before: tuple[float, float] | None, after: tuple[float, float] | None
) -> float | None:
    """Return the mean rows per model call between two `model_call_rows`."""
    if before is None or after is None or after[1] == before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])


def graphql_body(query: str, variables: dict[str, Any]) -> bytes:
    return json.dumps({"query": query, "variables": variables}).encode()


def graphql_data(body: bytes) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """Return the data and errors of a GraphQL response body."""
    payload = json.loads(body)
    return payload.get("data"), payload.get("errors") or []


def describe_errors(errors: list[dict[str, Any]]) -> str:
    return "; ".join(
        f"{error.get('extensions', {}).get('code')}: {error.get('message')}"
        for error in errors
    )


def sign_in(port: int, username: str, password: str) -> str:
    """Return an access token from fieldguard's `login` mutation."""
    body = graphql_body(LOGIN_MUTATION, {"u": username, "p": password})
    data, errors = graphql_data(
        post(port, "/graphql", body, {"Content-Type": "application/json"})
    )
    if errors or not data:
        raise BenchError(f"login of {username!r} failed: {describe_errors(errors)}")
    return data["login"]["accessToken"]


def fieldguard_endpoint(name: str, port: int, token: str, body: bytes) -> Endpoint:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    return Endpoint(name, port, "/graphql", body, headers)


def choose_api(
    requested: str,
    port: int,
    token: str,
    classes: list[str],
) -> ApiShape:
    """Return the API shape the server accepts, checking one `predict`.

    With `auto`, the new shape is tried first and the old one when the
    server rejects the new document as invalid.

    Raises:
        BenchError: No requested shape returned a valid prediction.
    """
    names = ["new", "old"] if requested == "auto" else [requested]
    failures = []
    for name in names:
        shape = API_SHAPES[name]
        body = graphql_body(shape.predict_query, shape.predict_variables(EXAMPLE_ROW))
        endpoint = fieldguard_endpoint("probe", port, token, body)
        data, errors = graphql_data(
            post(port, endpoint.path, endpoint.body, endpoint.headers)
        )
        if errors or data is None:
            failures.append(f"{name} API: {describe_errors(errors)}")
            continue
        check_prediction(data, classes)
        return shape
    raise BenchError("fieldguard rejected predict: " + " | ".join(failures))


def check_batch_response(
    endpoint: Endpoint, shape: ApiShape, rows: int, classes: list[str]
) -> None:
    data, errors = graphql_data(
        post(endpoint.port, endpoint.path, endpoint.body, endpoint.headers)
    )
    if errors or data is None:
        raise BenchError(f"{endpoint.name} failed: {describe_errors(errors)}")
    shape.check_batch(data, rows, classes)


def check_rest_response(endpoint: Endpoint, classes: list[str]) -> None:
    payload = json.loads(
        post(endpoint.port, endpoint.path, endpoint.body, endpoint.headers)
    )
    if payload.get("label") not in classes:
        raise BenchError(f"{endpoint.name} returned no known label: {payload}")
    if len(payload.get("probabilities") or []) != len(classes):
        raise BenchError(f"{endpoint.name} returned no probability per class")


def _send(connection: http.client.HTTPConnection, endpoint: Endpoint) -> float:
    """Send one request and return the seconds until its whole response was read.

    Raises:
        BenchError: The response was not a 200 without GraphQL errors.
    """
    started = time.perf_counter()
    connection.request(
        "POST", endpoint.path, body=endpoint.body, headers=endpoint.headers
    )
    response = connection.getresponse()
    data = response.read()
    elapsed = time.perf_counter() - started
    if response.status != 200 or b'"errors"' in data:
        raise BenchError(
            f"{endpoint.name} failed during the one-client run: "
            f"HTTP {response.status}, {data[:500]!r}"
        )
    return elapsed


def measure_one_client(
    endpoint: Endpoint, *, requests: int, max_seconds: float
) -> Timing:
    """Time sequential requests on one keep-alive connection.

    After 20 untimed warm-up requests, stops after `requests` timed requests
    or `max_seconds`, whichever comes first.
    """
    connection = http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=60)
    samples: list[float] = []
    try:
        for _ in range(20):
            _send(connection, endpoint)
        deadline = time.monotonic() + max_seconds
        while len(samples) < requests and time.monotonic() < deadline:
            samples.append(_send(connection, endpoint))
    finally:
        connection.close()
    return summarize(samples)


# ---------------------------------------------------------------------------
# wrk
# ---------------------------------------------------------------------------

# wrk script that posts one JSON body with a bearer token and counts the
# responses that are not 200 or carry GraphQL errors, so that a run whose
# figures include failures is reported.
WRK_SCRIPT = """\
local body_file = assert(io.open({body_path}, "rb"))
wrk.method = "POST"
wrk.body = body_file:read("*a")
body_file:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = {authorization}
failures = 0

local threads = {{}}

function setup(thread)
  table.insert(threads, thread)
end

function response(status, headers, body)
  if status ~= 200 or string.find(body, '"errors"', 1, true) then
    failures = failures + 1
  end
end

function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do
    total = total + thread:get("failures")
  end
  io.write(string.format("failed responses: %d\\n", total))
end
"""

_LATENCY_LINE = re.compile(r"^\s*(50|75|90|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m)\s*$")
_UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


@dataclass
class WrkResult:
    """Figures of one wrk run, with wrk's latencies in milliseconds."""

    requests_per_second: float
    p50_ms: float
    p99_ms: float
    requests: int
    failed_responses: int
    socket_errors: str
    # Server CPU from the start of the run until the server is idle again,
    # so that work it leaves for later counts too; None without /proc.
    cpu_us_per_request: float | None = None


def parse_wrk(output: str) -> WrkResult:
    """Read requests/s, the 50th and 99th percentiles and error counts.

    Raises:
        BenchError: The output lacks a figure, as when wrk failed.
    """
    percentiles: dict[str, float] = {}
    for line in output.splitlines():
        match = _LATENCY_LINE.match(line)
        if match:
            percentiles[match[1]] = float(match[2]) * _UNIT_MS[match[3]]
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    total = re.search(r"^\s*(\d+) requests in", output, re.MULTILINE)
    failed = re.search(r"^failed responses: (\d+)", output, re.MULTILINE)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: (.*)$", output, re.MULTILINE)
    if not (rate and total and failed and "50" in percentiles and "99" in percentiles):
        raise BenchError(f"cannot read the wrk output:\n{output}")
    failures = int(failed[1])
    if non_2xx and int(non_2xx[1]) > failures:
        failures = int(non_2xx[1])
    return WrkResult(
        requests_per_second=float(rate[1]),
        p50_ms=percentiles["50"],
        p99_ms=percentiles["99"],
        requests=int(total[1]),
        failed_responses=failures,
        socket_errors=socket_errors[1].strip() if socket_errors else "none",
    )


def wrk_path() -> str:
    """Return the path of wrk; main() checks that it is installed."""
    path = shutil.which("wrk")
    if path is None:
        raise BenchError("wrk is not installed")
    return path


def run_wrk(
    endpoint: Endpoint,
    *,
    duration: float,
    connections: int,
    pinning: Pinning,
    workdir: Path,
) -> WrkResult:
    """Load `endpoint` with one wrk thread for `duration` seconds.

    Raises:
        BenchError: wrk failed or ran 60 seconds over its duration.
    """
    stem = re.sub(r"[^a-z0-9]+", "-", endpoint.name.lower()).strip("-")
    body_path = workdir / f"{stem}.json"
    body_path.write_bytes(endpoint.body)
    script_path = workdir / f"{stem}.lua"
    script_path.write_text(
        WRK_SCRIPT.format(
            body_path=json.dumps(str(body_path)),
            authorization=json.dumps(endpoint.headers["Authorization"]),
        ),
        encoding="utf-8",
    )
    command = [
        *pinning.prefix(pinning.client_cpu),
        wrk_path(),
        "--threads",
        "1",
        "--connections",
        str(connections),
        "--duration",
        f"{max(1, round(duration))}s",
        "--timeout",
        "10s",
        "--latency",
        "--script",
        str(script_path),
        endpoint.url,
    ]
    try:
        completed = subprocess.run(  # noqa: S603 - wrk with options built here
            command,
            capture_output=True,
            text=True,
            timeout=duration + 60,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise BenchError(f"wrk on {endpoint.name} did not finish") from error
    if completed.returncode != 0:
        raise BenchError(
            f"wrk on {endpoint.name} failed with exit code {completed.returncode}:"
            f"\n{completed.stdout}\n{completed.stderr}"
        )
    return parse_wrk(completed.stdout)


@dataclass
class LoadResult:
    """The wrk rounds of one endpoint and their medians."""

    rounds: list[WrkResult]
    requests_per_second: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    failed_responses: int = 0
    cpu_us_per_request: float | None = None

    def __post_init__(self) -> None:
        self.requests_per_second = statistics.median(
            r.requests_per_second for r in self.rounds
        )
        cpu = [r.cpu_us_per_request for r in self.rounds]
        if all(value is not None for value in cpu):
            self.cpu_us_per_request = statistics.median(cpu)  # type: ignore[type-var]
        self.p50_ms = statistics.median(r.p50_ms for r in self.rounds)
        self.p99_ms = statistics.median(r.p99_ms for r in self.rounds)
        self.failed_responses = sum(r.failed_responses for r in self.rounds)


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float | None:
    """Return the CPU time a process has used, all threads, or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def wait_until_idle(pids: list[int], *, max_seconds: float = 30.0) -> bool:
    """Wait until the servers use under 5% of a CPU over half a second.

    A server may go on working after a run, writing what it buffered;
    measuring the next endpoint meanwhile would hand it less CPU. Returns
    False when they were still busy after `max_seconds`.
    """
    deadline = time.monotonic() + max_seconds
    while time.monotonic() < deadline:
        before = [cpu_seconds(pid) for pid in pids]
        time.sleep(0.5)
        after = [cpu_seconds(pid) for pid in pids]
        if None in before or None in after:
            return True
        if sum(a - b for a, b in zip(after, before, strict=True)) < 0.025:  # type: ignore[operator]
            return True
    return False


def measure_load(
    endpoints: list[Endpoint],
    options: Options,
    pinning: Pinning,
    workdir: Path,
    *,
    rounds: int,
    warnings: list[str],
    pids: dict[int, int],
) -> dict[str, LoadResult]:
    """Warm each endpoint up, then run wrk on them in turn, `rounds` times.

    Every run starts with all servers idle, and its CPU per request counts
    the server's work until it is idle again. Failed responses during the
    warm-up, and servers that stay busy, are added to `warnings`.
    """
    servers = sorted(set(pids.values()))
    results: dict[str, list[WrkResult]] = {endpoint.name: [] for endpoint in endpoints}
    settings = {
        "connections": options.connections,
        "pinning": pinning,
        "workdir": workdir,
    }
    for endpoint in endpoints:
        warmup = run_wrk(endpoint, duration=options.warmup, **settings)
        if warmup.failed_responses:
            warnings.append(
                f"{endpoint.name}: {warmup.failed_responses} failed responses "
                "during the wrk warm-up"
            )
    order = list(endpoints)
    for _ in range(rounds):
        for endpoint in order:
            if not wait_until_idle(servers):
                warnings.append(f"servers still busy before a run of {endpoint.name}")
            pid = pids[endpoint.port]
            started = cpu_seconds(pid)
            result = run_wrk(endpoint, duration=options.duration, **settings)
            if not wait_until_idle(servers):
                warnings.append(f"servers still busy after a run of {endpoint.name}")
            ended = cpu_seconds(pid)
            if started is not None and ended is not None and result.requests:
                result.cpu_us_per_request = (ended - started) * 1e6 / result.requests
            results[endpoint.name].append(result)
        order.reverse()
    return {name: LoadResult(runs) for name, runs in results.items()}


# ---------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------


@dataclass
class Results:
    """Every figure of one run, as written by --json."""

    machine: dict[str, Any]
    setup: dict[str, Any]
    catboost: dict[str, dict[str, Timing]] = field(default_factory=dict)
    guarded_list: dict[str, Timing] = field(default_factory=dict)
    one_client: dict[str, Timing] = field(default_factory=dict)
    load: dict[str, LoadResult] = field(default_factory=dict)
    # Mean rows per model call of fieldguard's one-row `predict`, from its
    # metrics: concurrent requests share a call.
    rows_per_model_call: dict[str, float | None] = field(default_factory=dict)
    ratios: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


FG_PREDICT = "fieldguard predict (1 row)"
FG_BATCH = f"fieldguard predictBatch ({BATCH_ROWS:,} rows)"
REST_PREDICT = "REST POST /predict (1 row)"


def new_user(environment: dict[str, str], username: str) -> str:
    """Create an analyst with `fieldguard create-user` and return the password."""
    password = BENCH_PASSWORD_PREFIX + secrets.token_urlsafe(18)
    run_cli(environment, "create-user", username, "--role", "analyst", stdin=password)
    return password


def rest_token(secret: str) -> str:
    """Sign a token for the REST baseline: fieldguard's claims plus `role`."""
    now = int(time.time())
    claims = {
        "iss": "fieldguard",
        "aud": "fieldguard",
        "sub": "1",
        "iat": now,
        "exp": now + 900,
        "jti": secrets.token_urlsafe(16),
        "role": "analyst",
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def rest_body(row: dict[str, object]) -> bytes:
    """Return the REST baseline's request body: the row keyed by model column."""
    return json.dumps(row).encode()


def run_benchmark(options: Options, results: Results, workdir: Path) -> None:
    """Set fieldguard up, measure everything and fill `results`."""
    pinning = choose_pinning()
    if pinning.client_cpu is not None:
        # This process and its in-process measurements share the clients' CPU.
        os.sched_setaffinity(0, {pinning.client_cpu})
    results.setup["pinning"] = pinning.reason
    if pinning.server_cpu is None:
        results.warnings.append(pinning.reason)

    data_dir = workdir / "data"
    environment = service_environment(data_dir, options.env)
    run_cli(environment, "train")
    run_cli(environment, "init")
    model = read_model_files(data_dir)
    rows = load_rows(model.feature_names, BATCH_ROWS)
    if set(EXAMPLE_ROW) != set(model.feature_names):
        raise BenchError(f"the model's features are {model.feature_names}")
    example = {name: EXAMPLE_ROW[name] for name in model.feature_names}
    passwords = {
        name: new_user(environment, name)
        for name in ("bench-predict", "bench-batch-one", "bench-batch-load")
    }
    results.setup["model_folder"] = str(model.folder.relative_to(workdir))

    print("Measuring CatBoost and the guarded list in-process...", flush=True)
    results.catboost = measure_catboost(model, example, rows, options)
    results.guarded_list = measure_guarded_list(options)

    print("Starting fieldguard and the REST baseline...", flush=True)
    servers: list[Server] = []
    try:
        fieldguard_port = free_port()
        start_server(
            "fieldguard",
            [
                *pinning.prefix(pinning.server_cpu),
                *fieldguard_command(
                    "serve", "--host", "127.0.0.1", "--port", str(fieldguard_port)
                ),
            ],
            environment,
            fieldguard_port,
            workdir / "fieldguard.log",
            servers,
        )
        rest_secret = secrets.token_urlsafe(48)
        rest_port = free_port()
        start_server(
            "REST baseline",
            [
                *pinning.prefix(pinning.server_cpu),
                sys.executable,
                str(REPO_ROOT / "bench" / "rest_baseline.py"),
                "--model-folder",
                str(model.folder),
                "--port",
                str(rest_port),
            ],
            {**environment, "REST_BASELINE_JWT_SECRET": rest_secret},
            rest_port,
            workdir / "rest.log",
            servers,
        )
        measure_servers(
            options,
            results,
            workdir,
            pinning,
            model,
            example,
            rows,
            ports=(fieldguard_port, rest_port),
            rest_secret=rest_secret,
            metrics_token=environment["FIELDGUARD_METRICS_TOKEN"],
            passwords=passwords,
            pids={server.port: server.process.pid for server in servers},
        )
        for server in servers:
            if server.process.poll() is not None:
                raise BenchError(f"{server.name} exited:\n{server.log_tail()}")
            errors = server.error_lines()
            if errors:
                distinct = "\n  ".join(sorted(set(errors))[:5])
                results.warnings.append(
                    f"{server.name} logged {len(errors)} errors:\n  {distinct}"
                )
    finally:
        for server in servers:
            stop_server(server)
            if options.logs_dir is not None:
                options.logs_dir.mkdir(parents=True, exist_ok=True)
                shutil.copy(server.log_path, options.logs_dir)


def measure_servers(
    options: Options,
    results: Results,
    workdir: Path,
    pinning: Pinning,
    model: ModelFiles,
    example: dict[str, object],
    rows: list[dict[str, object]],
    *,
    ports: tuple[int, int],
    rest_secret: str,
    metrics_token: str,
    passwords: dict[str, str],
    pids: dict[int, int],
) -> None:
    """Sign in, check one response per endpoint, then time them over HTTP."""
    fieldguard_port, rest_port = ports
    tokens = {
        name: sign_in(fieldguard_port, name, pw) for name, pw in passwords.items()
    }
    shape = choose_api(
        options.api, fieldguard_port, tokens["bench-predict"], model.classes
    )
    results.setup["api"] = shape.name

    predict_body = graphql_body(shape.predict_query, shape.predict_variables(example))
    batch_body = graphql_body(shape.batch_query, shape.batch_variables(rows))
    predict = fieldguard_endpoint(
        FG_PREDICT, fieldguard_port, tokens["bench-predict"], predict_body
    )
    batch_one = fieldguard_endpoint(
        FG_BATCH, fieldguard_port, tokens["bench-batch-one"], batch_body
    )
    batch_load = fieldguard_endpoint(
        FG_BATCH, fieldguard_port, tokens["bench-batch-load"], batch_body
    )
    rest = Endpoint(
        REST_PREDICT,
        rest_port,
        "/predict",
        rest_body(example),
        {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {rest_token(rest_secret)}",
        },
    )
    check_batch_response(batch_one, shape, len(rows), model.classes)
    check_rest_response(rest, model.classes)
    results.setup["request_bytes"] = {
        FG_PREDICT: len(predict_body),
        FG_BATCH: len(batch_body),
        REST_PREDICT: len(rest.body),
    }

    def call_rows() -> tuple[float, float] | None:
        return model_call_rows(fieldguard_port, metrics_token)

    print("Measuring with one client...", flush=True)
    for endpoint, count in (
        (predict, options.one_client_requests),
        (rest, options.one_client_requests),
        (batch_one, options.one_client_batch_requests),
    ):
        if endpoint is predict:
            before = call_rows()
        results.one_client[endpoint.name] = measure_one_client(
            endpoint, requests=count, max_seconds=options.one_client_seconds
        )
        if endpoint is predict:
            results.rows_per_model_call["one client"] = rows_per_call(
                before, call_rows()
            )

    print("Measuring under load with wrk...", flush=True)
    before = call_rows()
    results.load.update(
        measure_load(
            [predict, rest],
            options,
            pinning,
            workdir,
            rounds=options.rounds,
            warnings=results.warnings,
            pids=pids,
        )
    )
    results.rows_per_model_call["wrk"] = rows_per_call(before, call_rows())
    results.load.update(
        measure_load(
            [batch_load],
            options,
            pinning,
            workdir,
            rounds=1,
            warnings=results.warnings,
            pids=pids,
        )
    )
    for name, load in results.load.items():
        if load.failed_responses:
            results.warnings.append(
                f"{name}: {load.failed_responses} failed responses under load; "
                "its wrk figures include them"
            )


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------

PACKAGES = (
    "strawberry-graphql",
    "graphql-core",
    "catboost",
    "fastapi",
    "uvicorn",
    "pydantic",
    "pyjwt",
    "uvloop",
    "httptools",
)


def describe_machine() -> dict[str, Any]:
    """Return the CPU model, CPU count, Python and package versions, wrk version."""
    cpu_model = platform.processor() or "unknown"
    lscpu_path = shutil.which("lscpu")
    if lscpu_path is not None:
        lscpu = subprocess.run(  # noqa: S603 - a fixed command
            [lscpu_path], capture_output=True, text=True, check=False
        ).stdout
        match = re.search(r"^Model name:\s*(.+)$", lscpu, re.MULTILINE)
        if match:
            cpu_model = match[1].strip()
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    wrk = subprocess.run(  # noqa: S603 - a fixed command
        [wrk_path(), "-v"], capture_output=True, text=True, check=False
    )
    wrk_version = (wrk.stdout or wrk.stderr).splitlines()[0].split(" Copyright")[0]
    return {
        "cpu": cpu_model,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "packages": versions,
        "wrk": wrk_version,
    }


def compute_ratios(results: Results, service_input: str) -> list[dict[str, Any]]:
    """Return the target ratios, each with its value, target and outcome."""
    predict = results.load[FG_PREDICT]
    rest = results.load[REST_PREDICT]
    raw = results.catboost[str(BATCH_ROWS)]
    batch = results.one_client[FG_BATCH].median_ms
    listed = results.guarded_list
    # The target is against `predict_proba` called on a list of rows, as a
    # team calls it. The input form fieldguard builds is faster; its ratio is
    # shown too, with no target.
    entries: list[tuple[str, float, str, float | None]] = [
        (
            "fieldguard predict / REST requests/s (wrk)",
            predict.requests_per_second / rest.requests_per_second,
            ">=",
            1.0,
        ),
        *(
            [
                (
                    "REST / fieldguard server CPU per predict request (wrk)",
                    rest.cpu_us_per_request / predict.cpu_us_per_request,
                    "",
                    None,
                )
            ]
            if rest.cpu_us_per_request and predict.cpu_us_per_request
            else []
        ),
        (
            "fieldguard predict / REST p99 (wrk)",
            predict.p99_ms / rest.p99_ms,
            "<=",
            1.5,
        ),
        (
            f"fieldguard predictBatch one-client median / raw CatBoost "
            f"{BATCH_ROWS:,}-row median ({CATBOOST_FORMS['list']})",
            batch / raw["list"].median_ms,
            "<=",
            2.0,
        ),
        *(
            [
                (
                    f"the same / raw CatBoost {BATCH_ROWS:,}-row median "
                    f"({CATBOOST_FORMS[service_input]}, the service's input form)",
                    batch / raw[service_input].median_ms,
                    "",
                    None,
                )
            ]
            if service_input != "list"
            else []
        ),
        (
            "guarded / unguarded 1,000-item list median",
            listed["guarded"].median_ms / listed["unguarded"].median_ms,
            "<=",
            1.3,
        ),
    ]
    return [
        {
            "ratio": name,
            "value": value,
            "target": f"{comparison} {target}" if target is not None else None,
            "met": (
                None
                if target is None
                else value >= target
                if comparison == ">="
                else value <= target
            ),
        }
        for name, value, comparison, target in entries
    ]


def print_report(results: Results, options: Options) -> None:
    machine = results.machine
    print("\n## Machine\n")
    print(
        f"- CPU: {machine['cpu']}, {machine['cpus']} CPUs; {results.setup['pinning']}"
    )
    print(f"- Python {machine['python']}; {machine['wrk']}")
    print(
        "- "
        + ", ".join(
            f"{name} {version}" for name, version in machine["packages"].items()
        )
    )
    print(
        f"- fieldguard: FIELDGUARD_ENV={options.env}, SQLite, one worker, "
        f"{results.setup['api']} API; "
        + ", ".join(f"{k}={v}" for k, v in SERVICE_SETTINGS.items())
    )
    print(
        "- CatBoost input of the service (marked below): "
        f"{CATBOOST_FORMS[options.service_input]}"
    )

    print("\n## Raw CatBoost predict_proba, in-process (ms per call)\n")
    print("| input | rows | calls | median | p99 |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for rows, forms in results.catboost.items():
        for form, timing in forms.items():
            marker = " (service)" if form == options.service_input else ""
            print(
                f"| {CATBOOST_FORMS[form]}{marker} | {int(rows):,} | {timing.count} "
                f"| {timing.median_ms:.3f} | {timing.p99_ms:.3f} |"
            )

    print(
        f"\n## Under load: wrk, 1 thread, {options.connections} connections, "
        f"{options.duration:g} s a run\n"
    )
    print(
        "| endpoint | runs | requests/s | p50 ms | p99 ms | failed responses "
        "| server CPU us/request |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, load in results.load.items():
        cpu = (
            f"{load.cpu_us_per_request:,.0f}"
            if load.cpu_us_per_request is not None
            else "-"
        )
        print(
            f"| {name} | {len(load.rounds)} | {load.requests_per_second:,.0f} "
            f"| {load.p50_ms:.2f} | {load.p99_ms:.2f} | {load.failed_responses} "
            f"| {cpu} |"
        )

    per_call = {
        name: f"{value:.1f}" if value is not None else "not reported"
        for name, value in results.rows_per_model_call.items()
    }
    if per_call:
        print(
            "\nfieldguard predict, mean rows per model call (concurrent requests "
            "share a call): "
            + "; ".join(f"{name} {value}" for name, value in per_call.items())
        )

    print("\n## One client: sequential requests on one keep-alive connection\n")
    print("| endpoint | requests | median ms | p99 ms |")
    print("| --- | ---: | ---: | ---: |")
    for name, timing in results.one_client.items():
        print(
            f"| {name} | {timing.count} | {timing.median_ms:.3f} "
            f"| {timing.p99_ms:.3f} |"
        )

    print(
        f"\n## {LIST_ITEMS:,}-item list, 4 scalar fields, in-process schema.execute\n"
    )
    print("| schema | runs | median ms | p99 ms |")
    print("| --- | ---: | ---: | ---: |")
    for name, timing in results.guarded_list.items():
        label = "requires() on every field" if name == "guarded" else "no rules"
        print(
            f"| {label} | {timing.count} | {timing.median_ms:.2f} "
            f"| {timing.p99_ms:.2f} |"
        )

    print("\n## Target ratios\n")
    print("| ratio | value | target | met |")
    print("| --- | ---: | --- | --- |")
    for ratio in results.ratios:
        print(
            f"| {ratio['ratio']} | {ratio['value']:.2f} | {ratio['target'] or '-'} "
            f"| {_shown_outcome(ratio['met'])} |"
        )
    for warning in results.warnings:
        print(f"\nWARNING: {warning}")


def _shown_outcome(met: bool | None) -> str:
    if met is None:
        return "-"
    return "yes" if met else "no"


def write_json(results: Results, path: Path) -> None:
    payload = asdict(results)
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(f"\nWrote {path}")


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def parse_options(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])

    parser.add_argument(
        "--quick",
        action="store_true",
        help="Shorter runs and fewer calls: about 40 seconds instead of about 2 "
        "minutes.",
    )
    parser.add_argument(
        "--duration", type=float, help="Seconds of each wrk run (default 8, quick 3)."
    )
    parser.add_argument(
        "--connections",
        type=int,
        default=16,
        help="wrk connections, all on one wrk thread (default 16).",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        help="Alternating wrk runs of fieldguard predict and REST (default 3, "
        "quick 1); the table shows their medians.",
    )
    parser.add_argument(
        "--api",
        choices=("auto", "new", "old"),
        default="auto",
        help="GraphQL API shape. With auto, the new one is tried first (default auto).",
    )
    parser.add_argument(
        "--env",
        choices=("production", "development"),
        default="production",
        help="FIELDGUARD_ENV of the server (default production).",
    )
    parser.add_argument(
        "--service-input",
        choices=("auto", *CATBOOST_FORMS),
        default="auto",
        help="CatBoost input form the service uses, for the batch ratio. With "
        "auto, it is read from ml/predict.py (default auto).",
    )
    parser.add_argument("--json", type=Path, help="Also write the figures here.")
    parser.add_argument(
        "--logs",
        type=Path,
        help="Folder to copy the server logs to; they are deleted otherwise.",
    )
    args = parser.parse_args(argv)

    quick = args.quick
    duration = args.duration
    if duration is None:
        duration = 3 if quick else 8
    rounds = args.rounds
    if rounds is None:
        rounds = 1 if quick else 3
    if args.connections < 1:
        parser.error(f"--connections must be at least 1 (got {args.connections})")
    if duration < 1:
        parser.error(f"--duration must be at least 1 second (got {duration:g})")
    if rounds < 1:
        parser.error(f"--rounds must be at least 1 (got {rounds})")

    return Options(
        duration=duration,
        connections=args.connections,
        rounds=rounds,
        warmup=1 if quick else 2,
        api=args.api,
        env=args.env,
        service_input=(
            detect_service_input()
            if args.service_input == "auto"
            else args.service_input
        ),
        catboost_calls_one=500 if quick else 2000,
        catboost_calls_batch=60 if quick else 300,
        list_runs=40 if quick else 200,
        one_client_requests=300 if quick else 2000,
        one_client_batch_requests=30 if quick else 150,
        one_client_seconds=3 if quick else 10,
        json_path=args.json,
        logs_dir=args.logs,
    )


@contextmanager
def temporary_folder() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="fieldguard-serving-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv)
    if shutil.which("wrk") is None:
        print("serving.py: wrk is not installed; install it first.", file=sys.stderr)
        return 1
    # SIGTERM ends the run through the `finally` blocks that stop the servers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    results = Results(
        machine=describe_machine(),
        setup={
            "env": options.env,
            "service_input": options.service_input,
            "settings": SERVICE_SETTINGS,
            "duration_seconds": options.duration,
            "connections": options.connections,
            "rounds": options.rounds,
        },
    )
    started = time.monotonic()
    try:
        with temporary_folder() as workdir:
            run_benchmark(options, results, workdir)
    except BenchError as error:
        print(f"serving.py: {error}", file=sys.stderr)
        return 1

    results.ratios = compute_ratios(results, options.service_input)
    results.setup["elapsed_seconds"] = round(time.monotonic() - started, 1)
    print_report(results, options)
    print(f"\nTotal time: {results.setup['elapsed_seconds']:.0f} s")
    if options.json_path is not None:
        write_json(results, options.json_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
