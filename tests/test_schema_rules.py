"""The GraphQL schema: every field has a rule, and schema.graphql is current."""

from pathlib import Path

from graphql import GraphQLObjectType
from graphql import build_schema as parse_sdl

from graph.api import build_schema
from graph.cli import main as cli_main

SDL_PATH = Path(__file__).resolve().parent.parent / "schema.graphql"
RULE_DIRECTIVES = {"public", "signedIn", "requires", "ownerOr"}
PUBLIC_ALLOW_LIST = {
    ("LoginPayload", "passwordChangeRequired"),
    ("LoginPayload", "refreshToken"),
    ("Mutation", "refreshToken"),
    ("Mutation", "login"),
    ("LoginPayload", "accessToken"),
    ("LoginPayload", "tokenType"),
    ("LoginPayload", "expiresIn"),
}


def _field_rules() -> dict[tuple[str, str], list[str]]:
    sdl = build_schema().as_str()
    schema = parse_sdl(sdl)
    rules = {}
    for type_name, graphql_type in schema.type_map.items():
        if type_name.startswith("__") or not isinstance(
            graphql_type, GraphQLObjectType
        ):
            continue
        for field_name, field in graphql_type.fields.items():
            directives = [d.name.value for d in field.ast_node.directives]
            rules[(type_name, field_name)] = [
                name for name in directives if name in RULE_DIRECTIVES
            ]
    return rules


def test_every_field_has_exactly_one_rule():
    rules = _field_rules()
    assert rules, "no object fields found"
    missing = sorted(f"{t}.{f}" for (t, f), found in rules.items() if not found)
    doubled = sorted(f"{t}.{f}" for (t, f), found in rules.items() if len(found) > 1)
    assert missing == []
    assert doubled == []


def test_public_fields_are_the_allow_list():
    public = {key for key, found in _field_rules().items() if found == ["public"]}
    assert public == PUBLIC_ALLOW_LIST


def test_probabilities_and_label_need_their_permissions():
    sdl = build_schema().as_str()
    assert 'label: String @requires(permission: "predict:run")' in sdl
    assert (
        'probabilities: [ClassProbability!] @requires(permission: "predict:proba")'
        in sdl
    )


def test_schema_file_matches_code(capsys):
    assert cli_main(["export-schema"]) == 0
    exported = capsys.readouterr().out
    assert SDL_PATH.read_text(encoding="utf-8") == exported, (
        "schema.graphql is stale; run `fieldguard export-schema > schema.graphql`"
    )


def test_every_field_resolves_through_its_rule():
    """The rules are put in front of graphql-core's resolvers after Strawberry
    builds the schema. If Strawberry changed how it links its fields, fields
    would be left unguarded and this test would fail."""
    schema = build_schema()._schema
    unguarded = [
        f"{type_name}.{field_name}"
        for type_name, graphql_type in schema.type_map.items()
        if isinstance(graphql_type, GraphQLObjectType)
        and not type_name.startswith("__")
        for field_name, field in graphql_type.fields.items()
        if getattr(field.resolve, "__name__", "") != "guarded"
    ]
    assert unguarded == []


def test_predictions_resolve_without_strawberry_conversion():
    """predict and predictBatch read graphql-core's coerced input directly;
    the test fails if the direct resolvers are no longer installed."""
    query = build_schema()._schema.query_type
    for name in ("predict", "predictBatch"):
        guarded = query.fields[name].resolve
        inner = [cell.cell_contents for cell in guarded.__closure__ or ()]
        names = [getattr(item, "__qualname__", "") for item in inner]
        assert any(n.startswith("direct_resolvers.") for n in names), names
