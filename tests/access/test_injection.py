"""Injection attempts through every string argument of every query and mutation.

The schema is walked, not listed by hand: each field with a String or ID argument (also inside
input objects and lists) is called through the real app with payloads aimed at Cypher (quote
breaking, a CREATE, a DETACH DELETE), Lucene (``*:*``) and the surrounding text (NUL,
path traversal, markup). Every answer must be a handled one (data, or an error naming the
request — never the masked "Unexpected error."), no payload may run as Cypher (no ``Pwned``
node, nothing deleted) and a wildcard name search must not widen what a practitioner sees
(OWASP Top 10 2021 A03 Injection).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import neo4j
import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLField,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    get_named_type,
)
from starlette.testclient import TestClient

from access.tokens import Authenticator
from app.server import create_app
from app.settings import ApiSettings, Settings
from resolvers.schema import build_schema
from tests.conftest import graphql_request

pytestmark = pytest.mark.usefixtures("loaded_sample")

PAYLOADS = (
    "x'}) MATCH (n) DETACH DELETE n //",
    'x"}) CREATE (:Pwned {by: "q"}) //',
    "*:* OR name:*",
    "\\' \u0000 ../../etc/passwd <script>alert(1)</script> ${7*7}",
)
MASKED = "Unexpected error."
#: Operations whose string arguments are not passed to any query (checked to be handled).
SKIP: set[str] = set()


def _value(t: GraphQLInputType, payload: str, depth: int = 0) -> Any:
    if isinstance(t, GraphQLNonNull):
        return _value(t.of_type, payload, depth)
    if isinstance(t, GraphQLList):
        return [_value(t.of_type, payload, depth)]
    if isinstance(t, GraphQLEnumType):
        return next(iter(t.values))
    if isinstance(t, GraphQLInputObjectType):
        return {
            name: _value(f.type, payload, depth + 1)
            for name, f in t.fields.items()
            if isinstance(f.type, GraphQLNonNull) or _has_string(f.type)
        }
    assert isinstance(t, GraphQLScalarType)
    return {
        "String": payload,
        "ID": payload,
        "Int": 1,
        "Float": 1.0,
        "Boolean": False,
        "DateTime": "2020-01-01T00:00:00+00:00",
        "Date": "2020-01-01",
        "JSON": {"k": payload},
    }.get(t.name, payload)


def _has_string(t: GraphQLInputType) -> bool:
    named = get_named_type(t)
    if isinstance(named, GraphQLInputObjectType):
        return any(_has_string(f.type) for f in named.fields.values())
    return isinstance(named, GraphQLScalarType) and named.name in ("String", "ID")


def _type_ref(t: GraphQLInputType) -> str:
    if isinstance(t, GraphQLNonNull):
        return f"{_type_ref(t.of_type)}!"
    if isinstance(t, GraphQLList):
        return f"[{_type_ref(t.of_type)}]"
    return str(t.name)


def _operations() -> list[tuple[str, str, GraphQLField]]:
    schema = build_schema()._schema
    out = []
    for kind, root in (("query", schema.query_type), ("mutation", schema.mutation_type)):
        assert isinstance(root, GraphQLObjectType)
        for name, fld in root.fields.items():
            if any(_has_string(a.type) for a in fld.args.values()) and name not in SKIP:
                out.append((kind, name, fld))
    return out


OPERATIONS = _operations()


def _document(kind: str, name: str, fld: GraphQLField) -> tuple[str, list[str]]:
    args = [
        (a, arg)
        for a, arg in fld.args.items()
        if isinstance(arg.type, GraphQLNonNull) or _has_string(arg.type)
    ]
    decl = ", ".join(f"${a}: {_type_ref(arg.type)}" for a, arg in args)
    call = ", ".join(f"{a}: ${a}" for a, _ in args)
    selection = (
        ""
        if isinstance(get_named_type(fld.type), GraphQLScalarType | GraphQLEnumType)
        else " { __typename }"
    )
    head = f"{kind}({decl})" if decl else kind
    return f"{head} {{ {name}({call}){selection} }}", [a for a, _ in args]


@pytest.fixture(scope="module")
def client(settings: Settings, driver: neo4j.Driver) -> Iterator[TestClient]:
    tuned = settings.model_copy(update={"api": ApiSettings(anonymous_role="none")})
    with TestClient(create_app(tuned, driver=driver)) as c:
        yield c


def _census(driver: neo4j.Driver) -> dict[str, int]:
    rows, _, _ = driver.execute_query(
        "MATCH (n) WHERE NOT n:AuditEvent AND NOT n:AuditHead AND NOT n:ChangeEvent "
        "AND NOT n:ChangeFeed RETURN labels(n)[0] AS label, count(*) AS n"
    )
    return {r["label"]: r["n"] for r in rows}


def test_operations_were_found() -> None:
    names = {n for _, n, _ in OPERATIONS}
    assert {"patient", "patients", "grantAccess", "patientsWithCode", "registerApp"} <= names
    assert len(OPERATIONS) > 40


@pytest.mark.parametrize(("kind", "name", "fld"), OPERATIONS, ids=[n for _, n, _ in OPERATIONS])
def test_every_string_argument_resists_injection(
    client: TestClient, driver: neo4j.Driver, kind: str, name: str, fld: GraphQLField
) -> None:
    auth: Authenticator = client.app.state.auth  # type: ignore[attr-defined]
    tokens = (
        auth.issue(subject="inj-admin", role="admin"),
        auth.issue(subject="inj-dr", role="practitioner", organisation="mis:nowhere"),
    )
    document, names = _document(kind, name, fld)
    before = _census(driver)
    for payload in PAYLOADS:
        variables = {a: _value(fld.args[a].type, payload) for a in names}
        for token in tokens:
            body = graphql_request(client, document, token, **variables)
            messages = [e["message"] for e in body.get("errors") or []]
            assert MASKED not in messages, (name, payload, body)
            assert "data" in body or messages, body
    after = _census(driver)
    assert after.get("Pwned", 0) == 0
    # nothing deleted; a mutation may only have created nodes that hold the payload as data
    assert all(after.get(label, 0) >= n for label, n in before.items()), (name, before, after)
    created = {label: after[label] - before.get(label, 0) for label in after}
    assert all(v == 0 for k, v in created.items() if k not in ("Consent", "App", "AuthCode")), (
        name,
        created,
    )


def test_wildcard_search_does_not_widen_a_practitioners_view(
    client: TestClient, driver: neo4j.Driver
) -> None:
    auth: Authenticator = client.app.state.auth  # type: ignore[attr-defined]
    rows, _, _ = driver.execute_query("MATCH (p:Person) RETURN p.uid AS uid ORDER BY p.uid LIMIT 1")
    hidden = rows[0]["uid"]
    driver.execute_query(
        "MATCH (p:Person {uid: $u}) CREATE (p)-[:HAS_CONSENT]->(:Consent {uid: 'consent:inj', "
        "person: $u, kind: 'deny', granteeType: 'everyone', grantee: '*', categories: ['all'], "
        "excluded: [], purposes: ['treatment'], status: 'active', createdBy: 'test-injection'})",
        u=hidden,
    )
    try:
        dr = auth.issue(subject="inj-dr", role="practitioner", organisation="mis:nowhere")
        for text in ("*", "*:*", "uid:*", hidden, json.dumps(hidden)):
            body = graphql_request(
                client,
                "query($q: String!) { patients(search: $q, first: 100) { edges { node { id } } } }",
                dr,
                q=text,
            )
            ids = {
                e["node"]["id"]
                for e in (body.get("data") or {}).get("patients", {}).get("edges", [])
            }
            assert hidden not in ids, (text, body)
    finally:
        driver.execute_query("MATCH (c:Consent {uid: 'consent:inj'}) DETACH DELETE c")
