"""The `fieldguard` command."""

import argparse
import asyncio
import getpass
import json
import logging
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError
from sqlalchemy.engine import make_url

from graph.settings import Settings, SettingsError
from schema.audit import Actor, record_event

if TYPE_CHECKING:
    from ml.metadata import ModelShape

logger = logging.getLogger("fieldguard")
# The actor of changes made with this command, in the audit log.
COMMAND_LINE = Actor(username="(command line)")


class CommandError(Exception):
    """A command failed for a reason the operator can fix, given in the message."""


def _configure_logging(settings: Settings) -> None:
    from graph.logs import configure_logging

    configure_logging(settings.log_level, json_lines=settings.json_logs_enabled)


def _database_services(settings: Settings):  # type: ignore[no-untyped-def]
    from graph.services import build_account_tools
    from schema.database import create_service_engine, create_session_factory

    engine = create_service_engine(settings.resolved_database_url)
    return engine, create_session_factory(engine), build_account_tools(settings)


def _check_schema_current(settings: Settings) -> None:
    from schema.database import migration_state

    current, head = migration_state(settings.resolved_database_url)
    if current != head:
        raise CommandError(
            f"The database is at revision {current or 'none'}, not {head}. "
            "Run `fieldguard init` first."
        )


async def _init(settings: Settings) -> None:
    from schema.errors import InvalidInput
    from schema.roles import seed_catalogue
    from schema.users import create_user, get_user_by_username

    engine, sessions, accounts = _database_services(settings)
    try:
        async with sessions() as session, session.begin():
            await seed_catalogue(session)
            if await get_user_by_username(session, settings.admin_username):
                print(f"Admin user {settings.admin_username!r} exists already.")
                return
            generated = settings.admin_password is None
            password = (
                secrets.token_urlsafe(18)
                if settings.admin_password is None
                else settings.admin_password.get_secret_value()
            )
            try:
                await create_user(
                    session,
                    accounts,
                    username=settings.admin_username,
                    password=password,
                    role_names=["admin"],
                )
            except InvalidInput as error:
                variable = (
                    "FIELDGUARD_ADMIN_USERNAME"
                    if error.field == "username"
                    else "FIELDGUARD_ADMIN_PASSWORD"
                )
                raise CommandError(f"{variable} {error.reason}") from error
        if generated:
            # Shown once on purpose: it is not stored anywhere in clear text.
            print(
                f"Created admin user {settings.admin_username!r} with the "
                f"generated password:\n\n    {password}\n\n"
                "It is shown only this once."
            )
        else:
            print(
                f"Created admin user {settings.admin_username!r} with the password "
                "from FIELDGUARD_ADMIN_PASSWORD."
            )
    finally:
        await engine.dispose()


def command_init(settings: Settings, _args: argparse.Namespace) -> None:
    from schema.database import migrate

    # Creates the development secret now, so that every worker started later
    # reads the same one.
    if settings.jwt_algorithm == "HS256":
        settings.signing_secret()
    migrate(settings.resolved_database_url)
    asyncio.run(_init(settings))


def command_train(settings: Settings, args: argparse.Namespace) -> None:
    from ml.registry import latest_version_dir
    from ml.train import MODEL_NAME, train_penguins

    model_dir = settings.resolved_model_dir
    if args.if_missing and latest_version_dir(model_dir, MODEL_NAME) is not None:
        print(f"Model {MODEL_NAME!r} exists in {model_dir}; not training.")
        return
    result = train_penguins(model_dir, iterations=args.iterations)
    accuracy = result.metadata.metrics["accuracy"]
    print(
        f"Trained {MODEL_NAME!r} version {result.metadata.version} in "
        f"{result.directory}: held-out accuracy {accuracy:.3f}."
    )


def _read_new_password() -> str:
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    second = getpass.getpass("Repeat password: ")
    if first != second:
        raise CommandError("The passwords do not match.")
    return first


async def _create_user(settings: Settings, username: str, roles: Sequence[str]) -> None:
    from schema.errors import Conflict, InvalidInput
    from schema.users import create_user

    password = _read_new_password()
    engine, sessions, accounts = _database_services(settings)
    try:
        async with sessions() as session, session.begin():
            user = await create_user(
                session,
                accounts,
                username=username,
                password=password,
                role_names=roles,
            )
            await record_event(
                session,
                accounts.cipher,
                actor=COMMAND_LINE,
                action="user.create",
                outcome="success",
                target_type="user",
                target_id=user.id,
                details={"roles": sorted(roles)},
            )
            print(
                f"Created user {user.username!r} (id {user.id}) with roles "
                f"{', '.join(user.role_names) or 'none'}."
            )
    except (InvalidInput, Conflict) as error:
        raise CommandError(str(error)) from error
    finally:
        await engine.dispose()


def command_create_user(settings: Settings, args: argparse.Namespace) -> None:
    _check_schema_current(settings)
    asyncio.run(_create_user(settings, args.username, args.role))


async def _check_production_secrets(settings: Settings) -> None:
    """Refuse development secrets and an unchanged bootstrap admin password."""
    from graph.settings import read_data_keys_file
    from schema.users import get_user_by_username

    secret_file = settings.data_dir / "jwt_secret"
    if (
        secret_file.exists()
        and secret_file.read_text(encoding="utf-8").strip() == settings.signing_secret()
    ):
        raise CommandError(
            f"FIELDGUARD_JWT_SECRET equals the development secret in {secret_file}; "
            "use a new secret in production."
        )
    if settings.data_keys_path.exists():
        development = read_data_keys_file(settings.data_keys_path)
        production = settings.load_data_keys()
        shared = set(development.keys.values()) & set(production.keys.values())
        if shared or development.index_key == production.index_key:
            raise CommandError(
                "FIELDGUARD_DATA_KEYS or FIELDGUARD_DATA_INDEX_KEY reuses a "
                f"development key from {settings.data_keys_path}; use new keys."
            )
    if settings.admin_password is None:
        return
    engine, sessions, accounts = _database_services(settings)
    try:
        async with sessions() as session:
            admin = await get_user_by_username(session, settings.admin_username)
            if admin is None:
                return
            matches, _ = await accounts.hasher.verify(
                settings.admin_password.get_secret_value(), admin.password_hash
            )
    finally:
        await engine.dispose()
    if matches:
        raise CommandError(
            "The admin account still uses the password from "
            "FIELDGUARD_ADMIN_PASSWORD. Change it with `fieldguard set-password "
            f"{settings.admin_username}` and remove the variable."
        )
    logger.warning(
        "FIELDGUARD_ADMIN_PASSWORD is still set; it is used only by "
        "`fieldguard init` and should be removed in production."
    )


async def _set_password(settings: Settings, username: str) -> None:
    from schema.errors import InvalidInput
    from schema.users import get_user_by_username, read_email, set_password

    password = _read_new_password()
    engine, sessions, accounts = _database_services(settings)
    try:
        async with sessions() as session, session.begin():
            user = await get_user_by_username(session, username)
            if user is None:
                raise CommandError(f"No user named {username!r}.")
            await set_password(
                session,
                accounts,
                user,
                new_password=password,
                personal=[user.username, read_email(accounts.cipher, user)],
            )
            await record_event(
                session,
                accounts.cipher,
                actor=COMMAND_LINE,
                action="user.set_password",
                outcome="success",
                target_type="user",
                target_id=user.id,
            )
            print(f"Set a new password for {user.username!r}.")
    except InvalidInput as error:
        raise CommandError(f"The password {error.reason}") from error
    finally:
        await engine.dispose()


def command_set_password(settings: Settings, args: argparse.Namespace) -> None:
    _check_schema_current(settings)
    asyncio.run(_set_password(settings, args.username))


def command_serve(settings: Settings, args: argparse.Namespace) -> None:
    import uvicorn

    from graph.app import create_app
    from ml.errors import ModelUnavailable

    _check_schema_current(settings)
    if settings.is_production:
        asyncio.run(_check_production_secrets(settings))
    if args.workers > 1:
        _serve_workers(settings, args)
        return
    try:
        app = create_app(settings)
    except ModelUnavailable as error:
        raise CommandError(str(error)) from error
    # X-Forwarded-For is not believed: the client address is the socket's.
    # uvicorn's access log would record query strings, which can carry
    # passwords in GET variables; the request guard logs requests instead.
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_config=None,
        proxy_headers=False,
        access_log=False,
    )


def command_rotate_data_key(settings: Settings, args: argparse.Namespace) -> None:
    from graph.settings import add_data_key_to_file
    from schema.rotation import reseal_all

    if settings.data_keys is None:
        settings.load_data_keys()
        key_id = add_data_key_to_file(settings.data_keys_path)
        print(
            f"Added data key {key_id} to {settings.data_keys_path}; it is active now."
        )
    else:
        print(
            "Resealing under the first key of FIELDGUARD_DATA_KEYS. Every "
            "worker must already have the same key list."
        )
    _check_schema_current(settings)
    counts = asyncio.run(_reseal(settings, args.batch_size, reseal_all))
    for table, count in counts.items():
        print(f"Resealed {count} row(s) of {table}.")


async def _reseal(settings: Settings, batch_size: int, reseal_all) -> dict[str, int]:  # type: ignore[no-untyped-def]
    from graph.services import build_cipher
    from schema.database import create_service_engine, create_session_factory

    engine = create_service_engine(settings.resolved_database_url)
    try:
        return await reseal_all(
            create_session_factory(engine),
            build_cipher(settings),
            batch_size=batch_size,
        )
    finally:
        await engine.dispose()


def _served_shapes(settings: Settings) -> tuple["ModelShape", ...] | None:
    """Return the shapes of the models in the model folder, None if it has none."""
    from ml.errors import ModelUnavailable
    from ml.registry import active_metadata, list_models

    model_dir = settings.resolved_model_dir
    try:
        shapes = tuple(
            active_metadata(model_dir, name).shape for name in list_models(model_dir)
        )
    except ModelUnavailable as error:
        raise CommandError(str(error)) from error
    return shapes or None


def command_permissions_matrix(settings: Settings, args: argparse.Namespace) -> None:
    from graph.api import build_schema
    from graph.matrix import render_document, render_matrix

    sdl = build_schema(_served_shapes(settings)).as_str()
    print(render_document(sdl) if args.document else render_matrix(sdl), end="")


def _serve_workers(settings: Settings, args: argparse.Namespace) -> None:
    import os
    import shutil
    import tempfile

    import uvicorn

    from ml.errors import ModelUnavailable
    from ml.registry import load_all

    try:
        # Checked once here, so that a missing model stops the start with
        # its message instead of N workers failing one by one.
        load_all(settings.resolved_model_dir)
    except ModelUnavailable as error:
        raise CommandError(str(error)) from error
    # Workers each count metrics; the multiprocess mode merges them.
    metrics_dir = None
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        metrics_dir = tempfile.mkdtemp(prefix="fieldguard-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    # Development secrets are created now, so that all workers read one set.
    if settings.jwt_algorithm == "HS256":
        settings.signing_secret()
    settings.load_data_keys()
    try:
        uvicorn.run(
            "graph.app:create_app_from_environment",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            log_config=None,
            proxy_headers=False,
            access_log=False,
        )
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def command_export_schema(settings: Settings, _args: argparse.Namespace) -> None:
    from graph.api import build_schema

    shapes = _served_shapes(settings)
    if shapes is None:
        print(
            f"No model under {settings.resolved_model_dir}; "
            "showing the schema with the penguins model `fieldguard train` makes.",
            file=sys.stderr,
        )
    print(build_schema(shapes).as_str())


def command_import_model(settings: Settings, args: argparse.Namespace) -> None:
    from ml.errors import ModelUnavailable
    from ml.importer import import_model

    overrides = None
    if args.metadata is not None:
        try:
            overrides = json.loads(Path(args.metadata).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise CommandError(f"Cannot read {args.metadata}: {error}") from error
        if not isinstance(overrides, dict):
            raise CommandError(f"{args.metadata} must hold a JSON object.")
    try:
        metadata = import_model(
            settings.resolved_model_dir, Path(args.model_file), args.name, overrides
        )
    except ModelUnavailable as error:
        raise CommandError(str(error)) from error
    kind = (
        f"classes {', '.join(metadata.classes)}"
        if metadata.task == "classification"
        else "regression"
    )
    print(
        f"Imported {args.name!r} version {metadata.version}: "
        f"{len(metadata.features)} features, {kind}. "
        "A running service serves a new model from its next start; activate "
        "a new version of a served model with activateModelVersion."
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fieldguard",
        description="GraphQL service for CatBoost predictions with per-field access.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    init = commands.add_parser(
        "init",
        help="Migrate the database, seed permissions and roles, create the admin.",
    )
    init.set_defaults(handler=command_init)

    serve = commands.add_parser("serve", help="Serve GraphQL at /graphql.")
    serve.add_argument("--host", default="127.0.0.1", help="Address to bind.")
    serve.add_argument("--port", type=int, default=8000, help="TCP port to bind.")
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="Worker processes; several share the database and, with Redis, "
        "the sign-in counters.",
    )
    serve.set_defaults(handler=command_serve)

    train = commands.add_parser("train", help="Train a new version of the model.")
    train.add_argument(
        "--if-missing", action="store_true", help="Do nothing when a model exists."
    )
    train.add_argument(
        "--iterations", type=int, default=300, help="Boosting iterations."
    )
    train.set_defaults(handler=command_train)

    create_user = commands.add_parser(
        "create-user",
        help="Create a user; the password is read from standard input or a prompt.",
    )
    create_user.add_argument("username")
    create_user.add_argument(
        "--role",
        action="append",
        required=True,
        help="Role to grant; repeat for several roles.",
    )
    create_user.set_defaults(handler=command_create_user)

    set_password = commands.add_parser(
        "set-password",
        help=(
            "Set a user's password; it is read from standard input or a prompt. "
            "Clears a pending reset."
        ),
    )
    set_password.add_argument("username")
    set_password.set_defaults(handler=command_set_password)

    export = commands.add_parser(
        "export-schema",
        help="Print the GraphQL SDL, with the models in the model folder.",
    )
    export.set_defaults(handler=command_export_schema)

    importer = commands.add_parser(
        "import-model",
        help="Register a CatBoost model file trained elsewhere as a new version.",
    )
    importer.add_argument("model_file", help="The .cbm file to register.")
    importer.add_argument(
        "--name",
        required=True,
        help="Model name: lowercase letters, digits and _, starting with a letter.",
    )
    importer.add_argument(
        "--metadata",
        help=(
            "JSON file with what the model file cannot tell: target, "
            "training_data, metrics, missing_category, and per feature "
            "description, categories, unseen (reject or model), required, "
            "minimum and maximum."
        ),
    )
    importer.set_defaults(handler=command_import_model)

    rotate = commands.add_parser(
        "rotate-data-key",
        help=(
            "Re-encrypt personal data under the active data key; in development, "
            "first add a new key to the data folder's key file."
        ),
    )
    rotate.add_argument(
        "--batch-size", type=int, default=500, help="Rows per transaction."
    )
    rotate.set_defaults(handler=command_rotate_data_key)

    matrix = commands.add_parser(
        "permissions-matrix",
        help="Print which built-in role may read each field, from the schema.",
    )
    matrix.add_argument(
        "--document",
        action="store_true",
        help="Print the whole docs/permissions.md page.",
    )
    matrix.set_defaults(handler=command_permissions_matrix)
    return parser


def _describe_settings_error(error: ValidationError) -> str:
    lines = []
    for problem in error.errors():
        names = [str(part) for part in problem["loc"] if part != "__root__"]
        variable = f"FIELDGUARD_{names[0].upper()}" if names else "settings"
        message = problem["msg"].removeprefix("Value error, ")
        lines.append(f"  {variable}: {message}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from sqlalchemy.exc import OperationalError

    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as error:
        print(
            f"fieldguard: invalid settings:\n{_describe_settings_error(error)}",
            file=sys.stderr,
        )
        return 2
    _configure_logging(settings)
    try:
        args.handler(settings, args)
    except (CommandError, SettingsError) as error:
        print(f"fieldguard: {error}", file=sys.stderr)
        return 1
    except OperationalError as error:
        url = make_url(settings.resolved_database_url)
        print(
            f"fieldguard: cannot use the database at "
            f"{url.render_as_string(hide_password=True)}: {error.orig}. "
            "Check FIELDGUARD_DATABASE_URL, or FIELDGUARD_DATA_DIR (relative to "
            "the current folder).",
            file=sys.stderr,
        )
        return 1
    return 0
