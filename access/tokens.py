"""Bearer tokens: the built-in issuer and verification of every token a request presents.

The built-in issuer signs ES256 JWTs with a P-256 key created on first use in
``<data_dir>/auth/issuer-key.pem`` (mode 0600); ``jwks()`` publishes its public half. An
external OpenID Connect issuer is trusted when configured (``auth.oidc_issuer`` and
``auth.oidc_jwks_url``): its keys are fetched from that URL (the only network access, to an
endpoint the operator names) and cached by PyJWT's ``PyJWKClient``.

A refused token never falls back to anonymous access: it becomes a principal with no rights
whose ``error`` says why (expired, wrong audience, bad signature, unknown issuer, …), and
every request it makes is denied with that reason.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from access.policy import Principal, Role

#: Roles a token may carry (claim ``role``); ``practitioner`` is the clinician role.
_ROLE_NAMES: Mapping[str, Role] = {
    "practitioner": Role.CLINICIAN,
    "clinician": Role.CLINICIAN,
    "patient": Role.PATIENT,
    "steward": Role.STEWARD,
    "data-steward": Role.STEWARD,
    "terminologist": Role.TERMINOLOGIST,
    "researcher": Role.RESEARCHER,
    "app": Role.APP,
    "device": Role.DEVICE,
    "integrator": Role.INTEGRATOR,
    "admin": Role.ADMIN,
}


class TokenError(ValueError):
    """A token could not be issued (bad role, missing claim)."""


def role_named(name: str) -> Role:
    role = _ROLE_NAMES.get(name.strip().lower())
    if role is None:
        raise TokenError(f"unknown role {name!r} (known: {', '.join(sorted(_ROLE_NAMES))})")
    return role


@dataclass(frozen=True, slots=True)
class IssuerConfig:
    issuer: str
    audience: str
    key_file: Path
    token_ttl_s: int = 3600
    leeway_s: int = 30
    oidc_issuer: str | None = None
    oidc_jwks_url: str | None = None
    oidc_audience: str | None = None
    oidc_algorithms: tuple[str, ...] = ("RS256", "ES256")
    role_claim: str = "medshadow_role"
    organisation_claim: str = "medshadow_org"
    patient_claim: str = "patient"


class Authenticator:
    """Signs tokens (built-in issuer) and turns presented bearer tokens into principals."""

    def __init__(
        self,
        config: IssuerConfig,
        *,
        static_tokens: Mapping[str, str] | None = None,
        anonymous_role: str = "none",
    ) -> None:
        self.config = config
        self._static = dict(static_tokens or {})
        self._anonymous = anonymous_role
        self._lock = threading.Lock()
        self._key: ec.EllipticCurvePrivateKey | None = None
        self._jwks_client: jwt.PyJWKClient | None = None

    # -- the built-in issuer's key ----------------------------------------------------------
    @property
    def key(self) -> ec.EllipticCurvePrivateKey:
        with self._lock:
            if self._key is None:
                self._key = _load_or_create_key(self.config.key_file)
            return self._key

    @property
    def key_id(self) -> str:
        return _key_id(self.key.public_key())

    def jwks(self) -> dict[str, Any]:
        """The built-in issuer's public key as a JSON Web Key Set."""
        jwk = jwt.algorithms.ECAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        jwk.update(kid=self.key_id, use="sig", alg="ES256")
        return {"keys": [jwk]}

    # -- issuing ------------------------------------------------------------------------------
    def issue(
        self,
        *,
        subject: str,
        role: str | Role,
        organisation: str | None = None,
        patient: str | None = None,
        account: str | None = None,
        app: str | None = None,
        authorisation: str | None = None,
        scopes: Sequence[str] = (),
        ttl_s: int | None = None,
        now: float | None = None,
    ) -> str:
        """A signed access token (ES256) of the built-in issuer."""
        role = role if isinstance(role, Role) else role_named(role)
        if role is Role.NONE:
            raise TokenError("a token must carry a role")
        if role is Role.APP and (app is None or patient is None or authorisation is None):
            raise TokenError("an app token names its app, patient and authorisation")
        issued = int(now if now is not None else time.time())
        claims: dict[str, Any] = {
            "iss": self.config.issuer,
            "aud": self.config.audience,
            "sub": subject,
            "iat": issued,
            "nbf": issued,
            "exp": issued + (ttl_s or self.config.token_ttl_s),
            "jti": str(uuid.uuid4()),
            "role": role.value,
        }
        optional = {
            "org": organisation,
            "patient": patient,
            "account": account,
            "client_id": app,
            "authz": authorisation,
            "scope": " ".join(scopes) if scopes else None,
        }
        claims.update({k: v for k, v in optional.items() if v})
        return jwt.encode(claims, self.key, algorithm="ES256", headers={"kid": self.key_id})

    # -- verifying ----------------------------------------------------------------------------
    def principal(self, token: str | None) -> Principal:
        """The principal a request's bearer token stands for (refused tokens: no rights)."""
        if token is None:
            return Principal("anonymous", Role(self._anonymous))
        if token in self._static:
            return Principal.from_token(token, self._static, self._anonymous)
        if token.count(".") != 2:
            return _refused("unknown token")
        try:
            return self._verify(token)
        except jwt.ExpiredSignatureError:
            return _refused("token expired")
        except jwt.InvalidAudienceError:
            return _refused("token is for another audience")
        except jwt.InvalidIssuerError:
            return _refused("token of an untrusted issuer")
        except jwt.ImmatureSignatureError:
            return _refused("token not valid yet")
        except jwt.InvalidSignatureError:
            return _refused("token signature does not verify")
        except jwt.MissingRequiredClaimError as e:
            return _refused(f"token lacks the {e.claim!r} claim")
        except (jwt.PyJWTError, TokenError, ValueError) as e:
            return _refused(f"invalid token: {e}")

    def _verify(self, token: str) -> Principal:
        cfg = self.config
        issuer = jwt.decode(token, options={"verify_signature": False}).get("iss")
        if issuer == cfg.issuer:
            claims = jwt.decode(
                token,
                self.key.public_key(),
                algorithms=["ES256"],
                audience=cfg.audience,
                issuer=cfg.issuer,
                leeway=cfg.leeway_s,
                options={"require": ["exp", "iat", "iss", "aud", "sub", "jti"]},
            )
            return _principal(claims, "role", "org", "patient")
        if cfg.oidc_issuer is not None and issuer == cfg.oidc_issuer and cfg.oidc_jwks_url:
            key = self._jwks().get_signing_key_from_jwt(token)
            claims = jwt.decode(
                token,
                key.key,
                algorithms=list(cfg.oidc_algorithms),
                audience=cfg.oidc_audience or cfg.audience,
                issuer=cfg.oidc_issuer,
                leeway=cfg.leeway_s,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
            return _principal(claims, cfg.role_claim, cfg.organisation_claim, cfg.patient_claim)
        raise jwt.InvalidIssuerError(issuer)

    def _jwks(self) -> jwt.PyJWKClient:
        with self._lock:
            if self._jwks_client is None:
                assert self.config.oidc_jwks_url is not None
                self._jwks_client = jwt.PyJWKClient(self.config.oidc_jwks_url, lifespan=300)
            return self._jwks_client


def _principal(
    claims: Mapping[str, Any], role_claim: str, org_claim: str, patient_claim: str
) -> Principal:
    role_value = claims.get(role_claim)
    if not isinstance(role_value, str):
        raise TokenError(f"token lacks the {role_claim!r} claim")
    role = role_named(role_value)
    scope = claims.get("scope")
    return Principal(
        subject=str(claims["sub"]),
        role=role,
        organisation=_str(claims.get(org_claim)),
        patient=_str(claims.get(patient_claim)),
        account=_str(claims.get("account")),
        app=_str(claims.get("client_id")) if role is Role.APP else None,
        authorisation=_str(claims.get("authz")) if role is Role.APP else None,
        scopes=tuple(scope.split()) if isinstance(scope, str) else (),
        token_id=_str(claims.get("jti")),
    )


def _str(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _refused(reason: str) -> Principal:
    return Principal("refused-token", Role.NONE, error=reason)


def _key_id(public: ec.EllipticCurvePublicKey) -> str:
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()[:16]


def _load_or_create_key(path: Path) -> ec.EllipticCurvePrivateKey:
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise TokenError(f"{path}: not an EC private key")
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it meanwhile: use theirs
        return _load_or_create_key(path)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    return key
