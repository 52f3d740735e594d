"""Checked management of consent: a patient's grants and restrictions, break-glass access,
registered apps and their approval, the access log.

Patients manage only their own consents; practitioners may break the glass (time-limited,
flagged for review, a reason required); data stewards review break-glass episodes and read any
patient's access log; a patient reads their own. Every change is itself an audited write.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

from access.consent import (
    Category,
    ConsentError,
    GranteeType,
    Purpose,
    parse_categories,
    parse_scope,
)
from access.guard import PatientAccessDeniedError
from access.policy import Action, Role, require
from access.records import RecordAccess
from graph import consent as store
from graph.reader import GraphReader

#: Purposes a patient may grant (break-glass and app authorisations are made by their flows).
GRANTABLE_PURPOSES = frozenset({Purpose.TREATMENT, Purpose.RESEARCH})
MIN_REASON = 10


@dataclass(frozen=True, slots=True)
class AppRequest:
    """An app's authorisation request as the patient sees it."""

    client_id: str
    name: str
    redirect_uri: str
    scopes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class IssuedCode:
    redirect_to: str


class ConsentAccess:
    def __init__(self, records: RecordAccess, *, break_glass_minutes: int = 60) -> None:
        self._records = records
        self._reader: GraphReader = records.reader
        self.principal = records.principal
        self.break_glass_minutes = break_glass_minutes

    @property
    def _driver(self) -> Any:
        return self._reader.driver

    @property
    def _db(self) -> str | None:
        return self._reader.database

    def _own(self, person: str, action: Action = Action.MANAGE_CONSENT) -> None:
        """Only the patient themself (not even an admin) changes a patient's consent."""
        require(self.principal, action)
        if self.principal.role is not Role.PATIENT or self.principal.patient != person:
            self._records.guard.audit_note(person, "consent", "denied", "not the patient")
            raise PatientAccessDeniedError(action, "only the patient manages their consent")

    def _reads_log(self, person: str) -> None:
        if self.principal.role is Role.PATIENT and self.principal.patient == person:
            return
        require(self.principal, Action.REVIEW_ACCESS)

    # -- reading -----------------------------------------------------------------------------
    def consents(self, person: str) -> list[dict[str, Any]]:
        self._reads_log(person)
        self._records.guard.audit_note(person, "read", "allowed", what="consents")
        return store.consents(self._driver, persons=[person], database=self._db)

    def access_log(
        self, person: str, *, first: int = 50, before: int | None = None
    ) -> list[dict[str, Any]]:
        """Who read or changed this person's data, newest first (the patient or a steward)."""
        if not 1 <= first <= 500:
            raise ValueError("first must be between 1 and 500")
        self._reads_log(person)
        self._records.guard.audit_note(person, "read", "allowed", what="accessLog")
        return store.audit_events(
            self._driver, person=person, before=before, limit=first, database=self._db
        )

    def audit_trail(
        self,
        *,
        person: str | None,
        actor: str | None,
        outcome: str | None,
        first: int,
        before: int | None,
    ) -> list[dict[str, Any]]:
        require(self.principal, Action.REVIEW_ACCESS)
        if not 1 <= first <= 500:
            raise ValueError("first must be between 1 and 500")
        self._records.guard.audit_note(person, "read", "allowed", what="auditTrail")
        return store.audit_events(
            self._driver,
            person=person,
            actor=actor,
            outcome=outcome,
            before=before,
            limit=first,
            database=self._db,
        )

    # -- a patient's grants and restrictions --------------------------------------------------
    def grant(
        self,
        person: str,
        *,
        grantee_type: str,
        grantee: str | None,
        categories: Sequence[str],
        excluded: Sequence[str] = (),
        purposes: Sequence[str] = (Purpose.TREATMENT.value,),
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> dict[str, Any]:
        self._own(person)
        gtype, who = self._grantee(grantee_type, grantee)
        cats = parse_categories(categories)
        if not cats:
            raise ConsentError("a grant names at least one data category (or 'all')")
        purposes_ = self._purposes(purposes, gtype)
        if start and end and end <= start:
            raise ConsentError("the period ends before it starts")
        return self._write(
            person,
            {
                "kind": "permit",
                "granteeType": gtype.value,
                "grantee": who,
                "granteeName": self._grantee_name(gtype, who),
                "categories": sorted(c.value for c in cats),
                "excluded": sorted(c.value for c in parse_categories(excluded)),
                "purposes": sorted(p.value for p in purposes_),
                "start": start,
                "end": end,
            },
        )

    def restrict(
        self,
        person: str,
        *,
        grantee_type: str,
        grantee: str | None,
        categories: Sequence[str],
    ) -> dict[str, Any]:
        self._own(person)
        gtype, who = self._grantee(grantee_type, grantee)
        if gtype is GranteeType.RESEARCH:
            raise ConsentError("to stop research use, revoke the research grant")
        cats = parse_categories(categories)
        if not cats:
            raise ConsentError("a restriction names at least one data category (or 'all')")
        return self._write(
            person,
            {
                "kind": "deny",
                "granteeType": gtype.value,
                "grantee": who,
                "granteeName": self._grantee_name(gtype, who),
                "categories": sorted(c.value for c in cats),
                "excluded": [],
                "purposes": sorted(p.value for p in GRANTABLE_PURPOSES),
            },
        )

    def revoke(self, person: str, consent: str) -> dict[str, Any]:
        self._own(person)
        row = store.revoke_consent(
            self._driver, consent, person=person, by=self.principal.subject, database=self._db
        )
        if row is None:
            raise ConsentError(f"no consent {consent!r} of this patient")
        self._records.guard.note_write(person, "consent")
        return row

    def _write(self, person: str, props: dict[str, Any]) -> dict[str, Any]:
        row = store.write_consent(
            self._driver, {"person": person, **props}, by=self.principal.subject, database=self._db
        )
        if row is None:
            raise PatientAccessDeniedError(Action.MANAGE_CONSENT)
        self._records.guard.note_write(person, "consent")
        return row

    def _grantee(self, grantee_type: str, grantee: str | None) -> tuple[GranteeType, str]:
        try:
            gtype = GranteeType(grantee_type.strip().lower())
        except ValueError:
            known = ", ".join(g.value for g in GranteeType)
            raise ConsentError(f"unknown grantee type {grantee_type!r} (known: {known})") from None
        if gtype in (GranteeType.EVERYONE, GranteeType.RESEARCH):
            return gtype, "*"
        value = (grantee or "").strip()
        if not value:
            raise ConsentError(f"a grant to a {gtype.value} names who (grantee)")
        if gtype is GranteeType.ORGANISATION and value not in self._organisation_names():
            raise ConsentError(f"no organisation {value!r} (see organisations)")
        if gtype is GranteeType.APP and store.app(self._driver, value, database=self._db) is None:
            raise ConsentError(f"no registered app {value!r}")
        return gtype, value

    def _grantee_name(self, gtype: GranteeType, who: str) -> str | None:
        if gtype is GranteeType.ORGANISATION:
            return self._organisation_names().get(who)
        if gtype is GranteeType.APP:
            app = store.app(self._driver, who, database=self._db)
            return str(app["name"]) if app else None
        return {GranteeType.EVERYONE: "everyone", GranteeType.RESEARCH: "research data bank"}.get(
            gtype
        )

    def _purposes(self, purposes: Sequence[str], gtype: GranteeType) -> frozenset[Purpose]:
        out = set()
        for p in purposes:
            try:
                purpose = Purpose(p.strip().lower())
            except ValueError:
                purpose = None
            if purpose not in GRANTABLE_PURPOSES:
                known = ", ".join(sorted(g.value for g in GRANTABLE_PURPOSES))
                raise ConsentError(f"purpose {p!r} cannot be granted (grantable: {known})")
            out.add(purpose)
        if gtype is GranteeType.RESEARCH:
            out = {Purpose.RESEARCH}
        if not out:
            raise ConsentError("a grant names at least one purpose")
        return frozenset(out)

    def organisations(self) -> dict[str, str]:
        """The clinics (domains) a patient may grant to or restrict: uid -> name."""
        return self._organisation_names()

    def _organisation_names(self) -> dict[str, str]:
        return store.organisations(self._driver, database=self._db)

    # -- break-glass --------------------------------------------------------------------------
    def break_glass(self, person: str, reason: str) -> dict[str, Any]:
        """Emergency access to one patient for a limited time; always flagged for review."""
        require(self.principal, Action.BREAK_GLASS)
        reason = reason.strip()
        if len(reason) < MIN_REASON:
            raise ConsentError(f"break-glass needs a reason of at least {MIN_REASON} characters")
        now = datetime.now(UTC)
        row = store.write_consent(
            self._driver,
            {
                "person": person,
                "kind": "permit",
                "granteeType": GranteeType.PRACTITIONER.value,
                "grantee": self.principal.subject,
                "granteeName": self.principal.organisation,
                "categories": [Category.ALL.value],
                "excluded": [],
                "purposes": [Purpose.EMERGENCY.value],
                "start": now,
                "end": now + timedelta(minutes=self.break_glass_minutes),
                "breakGlass": True,
                "reason": reason,
            },
            by=self.principal.subject,
            database=self._db,
        )
        if row is None:
            self._records.guard.audit_note(person, "break-glass", "denied", "no such patient")
            raise ConsentError("no such patient")
        self._records.guard.audit_note(
            person, "break-glass", "allowed", reason, flagged=True, purpose=Purpose.EMERGENCY
        )
        return row

    def break_glass_episodes(self, *, unreviewed_only: bool) -> list[dict[str, Any]]:
        require(self.principal, Action.REVIEW_ACCESS)
        rows = store.consents(self._driver, break_glass=True, database=self._db)
        return [r for r in rows if not (unreviewed_only and r.get("reviewedAt"))]

    def review_break_glass(self, uid: str) -> dict[str, Any]:
        require(self.principal, Action.REVIEW_ACCESS)
        row = store.review_break_glass(
            self._driver, uid, by=self.principal.subject, database=self._db
        )
        if row is None:
            raise ConsentError(f"no break-glass episode {uid!r}")
        self._records.guard.note_write(str(row["person"]), "break-glass review")
        return row

    # -- apps (SMART-on-FHIR-like) ------------------------------------------------------------
    def register_app(
        self, *, name: str, redirect_uris: Sequence[str], scopes: Sequence[str]
    ) -> dict[str, Any]:
        require(self.principal, Action.REGISTER_APP)
        name = name.strip()
        if not 2 <= len(name) <= 100:
            raise ConsentError("an app's name has 2 to 100 characters")
        uris = [_redirect_uri(u) for u in redirect_uris]
        if not uris:
            raise ConsentError("an app registers at least one redirect URI")
        parsed = [parse_scope(s).text for s in scopes]
        if not parsed:
            raise ConsentError("an app requests at least one scope")
        return store.write_app(
            self._driver,
            {
                "uid": f"app-{uuid.uuid4().hex[:16]}",
                "name": name,
                "redirectUris": uris,
                "scopes": parsed,
                "registeredBy": self.principal.subject,
            },
            database=self._db,
        )

    def apps(self) -> list[dict[str, Any]]:
        return store.apps(self._driver, database=self._db)

    def authorisation_request(self, client_id: str, scope: str, redirect_uri: str) -> AppRequest:
        """Check an app's request against its registration (shown to the patient)."""
        app = store.app(self._driver, client_id, database=self._db)
        if app is None or app.get("status") != "active":
            raise ConsentError(f"no registered app {client_id!r}")
        if redirect_uri not in app["redirectUris"]:
            raise ConsentError("redirect_uri is not one the app registered")
        asked = scope.split()
        if not asked:
            raise ConsentError("the request names no scope")
        for s in asked:
            parse_scope(s)
            if s not in app["scopes"]:
                raise ConsentError(f"scope {s!r} was not registered by the app")
        return AppRequest(client_id, str(app["name"]), redirect_uri, tuple(asked))

    def approve_app(
        self,
        person: str,
        *,
        client_id: str,
        scope: str,
        redirect_uri: str,
        state: str | None,
        code_challenge: str,
        code_challenge_method: str = "S256",
        code_ttl_s: int = 120,
    ) -> IssuedCode:
        """The patient approves: an authorisation (a consent) and a one-time code for the app."""
        self._own(person)
        request = self.authorisation_request(client_id, scope, redirect_uri)
        if code_challenge_method != "S256" or not 43 <= len(code_challenge) <= 128:
            raise ConsentError("PKCE is required: code_challenge_method S256 and a code_challenge")
        cats = sorted({parse_scope(s).category.value for s in request.scopes})
        consent = self._write(
            person,
            {
                "kind": "permit",
                "granteeType": GranteeType.APP.value,
                "grantee": client_id,
                "granteeName": request.name,
                "categories": cats,
                "excluded": [],
                "purposes": [Purpose.APP.value],
                "scopes": list(request.scopes),
            },
        )
        code = secrets.token_urlsafe(32)
        store.write_auth_code(
            self._driver,
            _sha256(code),
            {
                "app": client_id,
                "person": person,
                "consent": consent["uid"],
                "redirectUri": redirect_uri,
                "scopes": list(request.scopes),
                "challenge": code_challenge,
                "expiresAt": datetime.now(UTC) + timedelta(seconds=code_ttl_s),
            },
            database=self._db,
        )
        return IssuedCode(_redirect(redirect_uri, code=code, state=state))

    def deny_app(self, *, client_id: str, redirect_uri: str, state: str | None) -> IssuedCode:
        app = store.app(self._driver, client_id, database=self._db)
        if app is None or redirect_uri not in app["redirectUris"]:
            raise ConsentError("unknown app or redirect_uri")
        return IssuedCode(_redirect(redirect_uri, error="access_denied", state=state))


def redeem_code(
    reader: GraphReader, *, code: str, client_id: str, redirect_uri: str, verifier: str
) -> dict[str, Any]:
    """The token endpoint's check of an authorisation code (one use, PKCE, not expired).

    Returns the code's row (app, person, consent, scopes); raises :class:`ConsentError` with
    the OAuth error text otherwise.
    """
    row = store.take_auth_code(reader.driver, _sha256(code), database=reader.database)
    if row is None:
        raise ConsentError("invalid_grant: unknown or used code")
    if row["expiresAt"] < datetime.now(UTC):
        raise ConsentError("invalid_grant: code expired")
    if row["app"] != client_id or row["redirectUri"] != redirect_uri:
        raise ConsentError("invalid_grant: code was issued to another client or redirect_uri")
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    if not secrets.compare_digest(challenge.decode(), str(row["challenge"])):
        raise ConsentError("invalid_grant: code_verifier does not match the code_challenge")
    return row


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _redirect_uri(uri: str) -> str:
    parts = urlsplit(uri.strip())
    local = parts.hostname in ("localhost", "127.0.0.1", "::1")
    if parts.scheme not in ("https", "http") or (parts.scheme == "http" and not local):
        raise ConsentError(f"redirect URI {uri!r} must be https (http only for localhost)")
    if parts.fragment:
        raise ConsentError(f"redirect URI {uri!r} must not have a fragment")
    return uri.strip()


def _redirect(uri: str, **params: str | None) -> str:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return f"{uri}{'&' if '?' in uri else '?'}{query}"
