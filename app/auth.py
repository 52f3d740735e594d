"""Authentication endpoints: the built-in issuer's keys, the OAuth flow for registered apps
(authorisation code + PKCE) and, on the embedded demo only, "sign in as".

* ``GET /.well-known/jwks.json`` — the built-in issuer's public key;
* ``GET /.well-known/smart-configuration`` — SMART App Launch discovery;
* ``GET /oauth/authorize`` — sends the patient's browser to the approval page of the UI;
* ``POST /oauth/token`` — exchanges a one-time code (with its PKCE verifier) for an access
  token limited to the approving patient and the approved scopes;
* ``GET /auth/dev-users`` and ``POST /auth/dev-token`` — demo identities and tokens for them;
  absent (404) in production mode or when ``auth.dev_login`` is off.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from access.consent import ConsentError
from access.consents import redeem_code
from access.tokens import Authenticator, IssuerConfig, TokenError, role_named
from app.settings import Settings
from graph import consent as store
from graph.reader import GraphReader
from resolvers.context import in_thread


class InsecureSettingsError(RuntimeError):
    """Production mode with a development shortcut still on (message names it)."""


def authenticator(settings: Settings) -> Authenticator:
    """The process's token issuer and verifier, after checking production settings."""
    auth, api = settings.auth, settings.api
    if api.production:
        if api.tokens:
            raise InsecureSettingsError(
                "production mode refuses static tokens (MEDSHADOW_API__TOKENS): use JWTs"
            )
        if api.anonymous_role != "none":
            raise InsecureSettingsError("production mode needs MEDSHADOW_API__ANONYMOUS_ROLE=none")
    config = IssuerConfig(
        issuer=auth.issuer,
        audience=auth.audience,
        key_file=settings.data_dir / "auth" / "issuer-key.pem",
        token_ttl_s=auth.token_ttl_s,
        leeway_s=auth.leeway_s,
        oidc_issuer=auth.oidc_issuer,
        oidc_jwks_url=auth.oidc_jwks_url,
        oidc_audience=auth.oidc_audience,
        oidc_algorithms=tuple(auth.oidc_algorithms),
        role_claim=auth.role_claim,
        organisation_claim=auth.organisation_claim,
        patient_claim=auth.patient_claim,
    )
    return Authenticator(config, static_tokens=api.tokens, anonymous_role=api.anonymous_role)


def _oauth_error(error: str, description: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status)


def auth_routes(settings: Settings) -> list[Route]:
    auth = settings.auth
    dev = auth.dev_login and not settings.api.production

    async def jwks(request: Request) -> Response:
        issuer: Authenticator = request.app.state.auth
        return JSONResponse(await in_thread(issuer.jwks))

    async def smart_configuration(request: Request) -> Response:
        base = str(request.base_url).rstrip("/")
        return JSONResponse(
            {
                "issuer": auth.issuer,
                "jwks_uri": f"{base}/.well-known/jwks.json",
                "authorization_endpoint": f"{base}/oauth/authorize",
                "token_endpoint": f"{base}/oauth/token",
                "grant_types_supported": ["authorization_code"],
                "code_challenge_methods_supported": ["S256"],
                "scopes_supported": ["patient/*.read", "patient/*.rs"],
                "capabilities": [
                    "launch-standalone",
                    "client-public",
                    "permission-patient",
                    "permission-v1",
                    "permission-v2",
                ],
            }
        )

    async def authorize(request: Request) -> Response:
        query = dict(request.query_params)
        if query.get("response_type") != "code":
            return _oauth_error("unsupported_response_type", "response_type must be code")
        return RedirectResponse(f"/ui/#/authorize?{urlencode(query)}", status_code=302)

    async def token(request: Request) -> Response:
        form = await request.form()
        fields = {k: str(v) for k, v in form.items()}
        if fields.get("grant_type") != "authorization_code":
            return _oauth_error("unsupported_grant_type", "grant_type must be authorization_code")
        missing = [
            k for k in ("code", "client_id", "redirect_uri", "code_verifier") if not fields.get(k)
        ]
        if missing:
            return _oauth_error("invalid_request", f"missing: {', '.join(missing)}")
        reader = GraphReader(request.app.state.driver, database=settings.neo4j.database)
        try:
            row = await in_thread(
                redeem_code,
                reader,
                code=fields["code"],
                client_id=fields["client_id"],
                redirect_uri=fields["redirect_uri"],
                verifier=fields["code_verifier"],
            )
        except ConsentError as e:
            error, _, description = str(e).partition(": ")
            return _oauth_error(error, description)
        issuer: Authenticator = request.app.state.auth
        scopes = list(row["scopes"])
        access_token = issuer.issue(
            subject=fields["client_id"],
            role="app",
            app=fields["client_id"],
            patient=str(row["person"]),
            authorisation=str(row["consent"]),
            scopes=scopes,
            ttl_s=auth.app_token_ttl_s,
        )
        return JSONResponse(
            {
                "access_token": access_token,
                "token_type": "Bearer",
                "expires_in": auth.app_token_ttl_s,
                "scope": " ".join(scopes),
                "patient": row["person"],
            },
            headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
        )

    async def dev_users(request: Request) -> Response:
        people, clinics = await in_thread(
            store.demo_identities, request.app.state.driver, database=settings.neo4j.database
        )
        users: list[dict[str, Any]] = [
            {
                "label": f"{p['name'] or p['uid']} (patient)",
                "role": "patient",
                "subject": p["uid"],
                "patient": p["uid"],
                "account": p["account"],
                "organisation": None,
            }
            for p in people
        ]
        users += [
            {
                "label": f"Dr. Demo at {c['name']} (practitioner)",
                "role": "practitioner",
                "subject": f"practitioner:demo@{c['uid']}",
                "organisation": c["uid"],
                "patient": None,
                "account": None,
            }
            for c in clinics
        ]
        users += [
            {
                "label": label,
                "role": role,
                "subject": f"{role}:demo",
                "organisation": None,
                "patient": None,
                "account": None,
            }
            for label, role in (
                ("Data steward", "steward"),
                ("Researcher", "researcher"),
                ("Terminologist", "terminologist"),
            )
        ]
        return JSONResponse(users)

    async def dev_token(request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"error": "body must be JSON"}, 400)
        if not isinstance(body, dict) or not isinstance(body.get("subject"), str):
            return JSONResponse({"error": "give role and subject"}, 400)
        issuer: Authenticator = request.app.state.auth
        try:
            role = role_named(str(body.get("role", "")))
            token = issuer.issue(
                subject=body["subject"],
                role=role,
                organisation=body.get("organisation") or None,
                patient=body.get("patient") or None,
                account=body.get("account") or None,
            )
        except TokenError as e:
            return JSONResponse({"error": str(e)}, 400)
        return JSONResponse(
            {"access_token": token, "token_type": "Bearer", "expires_in": auth.token_ttl_s}
        )

    routes = [
        Route("/.well-known/jwks.json", jwks),
        Route("/.well-known/smart-configuration", smart_configuration),
        Route("/oauth/authorize", authorize),
        Route("/oauth/token", token, methods=["POST"]),
    ]
    if dev:
        routes += [
            Route("/auth/dev-users", dev_users),
            Route("/auth/dev-token", dev_token, methods=["POST"]),
        ]
    return routes
