"""Bearer tokens (access/tokens.py): the built-in issuer's JWTs verify; forged, expired,
tampered, wrong-audience, wrong-issuer and unsigned tokens are refused with the reason, and a
refused token never falls back to anonymous access. An external OIDC issuer's tokens verify
against its JWKS, served here by a real HTTP server on localhost (RFC 7517 / OpenID Connect
Discovery 1.0 §3)."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from access.policy import Role
from access.tokens import Authenticator, IssuerConfig, TokenError


@pytest.fixture
def issuer(tmp_path: Path) -> Authenticator:
    config = IssuerConfig(issuer="medshadow", audience="medshadow", key_file=tmp_path / "k.pem")
    return Authenticator(config, static_tokens={"dev-1": "device"}, anonymous_role="clinician")


def test_issued_token_round_trips_to_the_principal(issuer: Authenticator) -> None:
    token = issuer.issue(subject="dr-rivera", role="practitioner", organisation="mis:clinic-a")
    p = issuer.principal(token)
    assert (p.subject, p.role, p.organisation, p.error) == (
        "dr-rivera",
        Role.CLINICIAN,
        "mis:clinic-a",
        None,
    )
    assert p.token_id
    app = issuer.principal(
        issuer.issue(
            subject="app-1",
            role="app",
            app="app-1",
            patient="person:x",
            authorisation="consent:1",
            scopes=["patient/Observation.read"],
        )
    )
    assert (app.role, app.app, app.patient, app.authorisation, app.scopes) == (
        Role.APP,
        "app-1",
        "person:x",
        "consent:1",
        ("patient/Observation.read",),
    )
    assert (issuer.config.key_file.stat().st_mode & 0o777) == 0o600


def test_key_persists_and_jwks_publishes_it(issuer: Authenticator, tmp_path: Path) -> None:
    token = issuer.issue(subject="s", role="steward")
    again = Authenticator(issuer.config)  # a restarted process reads the same key
    assert again.principal(token).role is Role.STEWARD
    (jwk,) = issuer.jwks()["keys"]
    assert (jwk["kty"], jwk["crv"], jwk["alg"], jwk["kid"]) == (
        "EC",
        "P-256",
        "ES256",
        issuer.key_id,
    )
    public = jwt.PyJWK(jwk).key
    assert jwt.decode(token, public, algorithms=["ES256"], audience="medshadow")["sub"] == "s"


def _refusal(issuer: Authenticator, token: str) -> str | None:
    p = issuer.principal(token)
    assert p.role is Role.NONE  # never anonymous, never the claimed role
    return p.error


def test_bad_tokens_are_refused_with_the_reason(issuer: Authenticator, tmp_path: Path) -> None:
    past = time.time() - 7200
    assert _refusal(issuer, issuer.issue(subject="x", role="admin", now=past)) == "token expired"
    other_aud = Authenticator(
        IssuerConfig(issuer="medshadow", audience="elsewhere", key_file=issuer.config.key_file)
    )
    token = other_aud.issue(subject="x", role="admin")
    assert _refusal(issuer, token) == "token is for another audience"
    # forged: same claims and key id, signed with another key
    claims = jwt.decode(token, options={"verify_signature": False}) | {"aud": "medshadow"}
    forged = jwt.encode(
        claims, ec.generate_private_key(ec.SECP256R1()), "ES256", {"kid": issuer.key_id}
    )
    assert _refusal(issuer, forged) == "token signature does not verify"
    # tampered: a genuine token with its role changed
    genuine = issuer.issue(subject="x", role="patient", patient="person:x")
    head, body, sig = genuine.split(".")
    payload = jwt.utils.base64url_decode(body)
    tampered_body = jwt.utils.base64url_encode(payload.replace(b'"patient"', b'"admin"', 1))
    assert _refusal(issuer, f"{head}.{tampered_body.decode()}.{sig}") == (
        "token signature does not verify"
    )
    unsigned = jwt.encode(claims, None, algorithm="none")  # type: ignore[arg-type]
    assert "invalid token" in (_refusal(issuer, unsigned) or "")
    stranger = Authenticator(
        IssuerConfig(issuer="evil", audience="medshadow", key_file=tmp_path / "evil.pem")
    )
    assert _refusal(issuer, stranger.issue(subject="x", role="admin")) == (
        "token of an untrusted issuer"
    )
    assert _refusal(issuer, "not-a-token") == "unknown token"
    assert _refusal(issuer, "a.b.c") is not None
    no_role = jwt.encode(
        claims | {"role": None, "exp": int(time.time()) + 60},
        issuer.key,
        "ES256",
        {"kid": issuer.key_id},
    )
    assert "role" in (_refusal(issuer, no_role) or "")


def test_static_and_anonymous(issuer: Authenticator) -> None:
    assert issuer.principal("dev-1").role is Role.DEVICE
    assert issuer.principal(None).role is Role.CLINICIAN
    with pytest.raises(TokenError, match="unknown role"):
        issuer.issue(subject="x", role="overlord")
    with pytest.raises(TokenError, match="app token"):
        issuer.issue(subject="x", role="app")


@pytest.fixture
def oidc() -> Iterator[tuple[str, rsa.RSAPrivateKey]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    body = json.dumps({"keys": [jwk | {"kid": "k1", "use": "sig", "alg": "RS256"}]}).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/jwks", key
    server.shutdown()
    server.server_close()
    thread.join()


def test_external_oidc_issuer(oidc: tuple[str, rsa.RSAPrivateKey], tmp_path: Path) -> None:
    url, key = oidc
    auth = Authenticator(
        IssuerConfig(
            issuer="medshadow",
            audience="medshadow",
            key_file=tmp_path / "k.pem",
            oidc_issuer="https://idp.example.org",
            oidc_jwks_url=url,
            oidc_audience="medshadow-api",
        )
    )
    now = int(time.time())
    claims = {
        "iss": "https://idp.example.org",
        "aud": "medshadow-api",
        "sub": "u-42",
        "iat": now,
        "exp": now + 300,
        "medshadow_role": "practitioner",
        "medshadow_org": "mis:clinic-a",
    }
    token = jwt.encode(claims, key, "RS256", {"kid": "k1"})
    p = auth.principal(token)
    assert (p.subject, p.role, p.organisation) == ("u-42", Role.CLINICIAN, "mis:clinic-a")
    wrong_aud = jwt.encode(claims | {"aud": "medshadow"}, key, "RS256", {"kid": "k1"})
    assert auth.principal(wrong_aud).error == "token is for another audience"
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert auth.principal(jwt.encode(claims, other_key, "RS256", {"kid": "k1"})).role is Role.NONE
