"""Production mode refuses development shortcuts: static tokens, anonymous access, the demo's
"sign in as", introspection."""

from __future__ import annotations

import neo4j
import pytest
from starlette.testclient import TestClient

from app.auth import InsecureSettingsError
from app.server import create_app
from app.settings import ApiSettings, Settings
from tests.conftest import graphql_request


def test_production_refuses_static_tokens_and_anonymous_access(
    settings: Settings, driver: neo4j.Driver
) -> None:
    for api, words in (
        (ApiSettings(production=True, tokens={"t": "admin"}, anonymous_role="none"), "static"),
        (ApiSettings(production=True, anonymous_role="clinician"), "ANONYMOUS_ROLE=none"),
    ):
        with pytest.raises(InsecureSettingsError, match=words):
            create_app(settings.model_copy(update={"api": api}), driver=driver)


def test_production_serves_no_demo_login_and_no_introspection(
    settings: Settings, driver: neo4j.Driver
) -> None:
    tuned = settings.model_copy(update={"api": ApiSettings(production=True, anonymous_role="none")})
    with TestClient(create_app(tuned, driver=driver)) as client:
        assert client.get("/auth/dev-users").status_code == 404
        assert client.post(
            "/auth/dev-token", json={"role": "admin", "subject": "x"}
        ).status_code in (
            404,
            405,
        )
        assert client.get("/.well-known/jwks.json").json()["keys"][0]["alg"] == "ES256"
        body = graphql_request(client, "{ __schema { types { name } } }", None)
        assert "introspection" in body["errors"][0]["message"].lower()
        anonymous = graphql_request(client, "{ patients { totalCount } }", None)
        assert anonymous["errors"][0]["message"].startswith("not allowed")
