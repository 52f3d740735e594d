"""The checked-in SDL is the API contract: a schema change must update it (`make sdl`)."""

from __future__ import annotations

from pathlib import Path

from resolvers.schema import build_schema

SDL = Path(__file__).resolve().parents[2] / "resolvers" / "schema.graphql"


def test_checked_in_sdl_matches_schema() -> None:
    current = build_schema().as_str() + "\n"
    assert SDL.read_text() == current, "GraphQL schema changed: run `make sdl` and commit it"


def test_production_schema_disables_introspection() -> None:
    schema = build_schema(production=True)
    result = schema.execute_sync("{ __schema { types { name } } }")
    assert result.errors
    assert "introspection" in result.errors[0].message.lower()


def test_unexpected_errors_are_masked_expected_ones_are_not() -> None:
    from graphql import GraphQLError

    from access.policy import AccessDeniedError, Action
    from resolvers.schema import _should_mask

    leaky = GraphQLError("boom", original_error=RuntimeError("Jane Doe, 999-12-3456, HIV+"))
    assert _should_mask(leaky)
    assert not _should_mask(
        GraphQLError("x", original_error=AccessDeniedError(Action.READ_PATIENT))
    )
    assert not _should_mask(GraphQLError("Cannot query field 'nope' on type 'Query'."))
