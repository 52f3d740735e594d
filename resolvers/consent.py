"""GraphQL of consent, break-glass, registered apps and the access log.

Every call goes through :class:`access.consents.ConsentAccess`; the checks (only the patient
changes their consent, a steward reviews, a practitioner breaks the glass) live there.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry

from access.consent import SENSITIVE, Category, parse_scope
from access.consents import ConsentAccess
from access.guard import purpose_of
from resolvers.context import Info, in_thread

_LABELS = {
    Category.ALL: "All my data",
    Category.DEMOGRAPHICS: "Demographics (name, birth date, identifiers)",
    Category.CONDITIONS: "Conditions and symptoms",
    Category.MEDICATIONS: "Medications",
    Category.ALLERGIES: "Allergies",
    Category.ENCOUNTERS: "Visits",
    Category.PROCEDURES: "Procedures",
    Category.IMMUNIZATIONS: "Immunizations",
    Category.OBSERVATIONS: "All observations and device readings",
    Category.VITALS: "Vital signs",
    Category.LABORATORY: "Laboratory results",
    Category.DOCUMENTS: "Clinical notes and documents",
    Category.MENTAL_HEALTH: "Mental health",
    Category.HIV: "HIV",
}


def _consents(info: Info) -> ConsentAccess:
    ctx = info.context
    return ConsentAccess(ctx.access, break_glass_minutes=ctx.break_glass_minutes)


@strawberry.type(description="Who the request's token stands for.")
class Me:
    subject: str
    role: str
    organisation: str | None
    patient_id: strawberry.ID | None
    app: str | None
    scopes: list[str]
    purpose: str
    token_error: str | None = strawberry.field(
        description="Why a presented token was refused (then every request is denied)."
    )


@strawberry.type(description="A data category a consent can name.")
class DataCategory:
    id: str
    label: str
    sensitive: bool


@strawberry.type(description="A patient's grant (permit) or restriction (deny) of access.")
class Consent:
    id: strawberry.ID
    person_id: strawberry.ID
    kind: str = strawberry.field(description="permit | deny")
    grantee_type: str = strawberry.field(
        description="practitioner | organisation | app | research | everyone"
    )
    grantee: str
    grantee_name: str | None
    categories: list[str]
    excluded: list[str]
    purposes: list[str]
    start: datetime | None
    end: datetime | None
    status: str = strawberry.field(description="active | revoked")
    break_glass: bool
    reason: str | None
    scopes: list[str]
    created_at: datetime | None
    created_by: str | None
    revoked_at: datetime | None
    revoked_by: str | None
    reviewed_at: datetime | None
    reviewed_by: str | None

    @classmethod
    def of(cls, row: dict[str, Any]) -> Consent:
        return cls(
            id=strawberry.ID(row["uid"]),
            person_id=strawberry.ID(row["person"]),
            kind=row["kind"],
            grantee_type=row["granteeType"],
            grantee=row["grantee"],
            grantee_name=row.get("granteeName"),
            categories=list(row.get("categories") or []),
            excluded=list(row.get("excluded") or []),
            purposes=list(row.get("purposes") or []),
            start=row.get("start"),
            end=row.get("end"),
            status=row.get("status") or "active",
            break_glass=bool(row.get("breakGlass")),
            reason=row.get("reason"),
            scopes=list(row.get("scopes") or []),
            created_at=row.get("createdAt"),
            created_by=row.get("createdBy"),
            revoked_at=row.get("revokedAt"),
            revoked_by=row.get("revokedBy"),
            reviewed_at=row.get("reviewedAt"),
            reviewed_by=row.get("reviewedBy"),
        )


@strawberry.type(description="One read or write of a patient's data, or its denial.")
class AccessEvent:
    seq: int
    at: datetime
    actor: str
    role: str
    organisation: str | None
    app: str | None
    person_id: strawberry.ID | None
    action: str = strawberry.field(description="read | write | consent | break-glass | export")
    what: str
    purpose: str
    outcome: str = strawberry.field(description="allowed | denied")
    reason: str | None
    basis: str | None = strawberry.field(description="What allowed it: self, consent:…, …")
    break_glass: bool

    @classmethod
    def of(cls, row: dict[str, Any]) -> AccessEvent:
        return cls(
            seq=int(row["seq"]),
            at=row["at"],
            actor=row["actor"],
            role=row["role"],
            organisation=row.get("organisation"),
            app=row.get("app"),
            person_id=strawberry.ID(row["person"]) if row.get("person") else None,
            action=row["action"],
            what=row.get("what") or "",
            purpose=row.get("purpose") or "",
            outcome=row["outcome"],
            reason=row.get("reason"),
            basis=row.get("basis"),
            break_glass=bool(row.get("breakGlass")),
        )


@strawberry.type(description="A clinic (domain) a patient may grant access to.")
class Organisation:
    id: strawberry.ID
    name: str


@strawberry.type(description="A registered third-party app.")
class App:
    client_id: str
    name: str
    redirect_uris: list[str]
    scopes: list[str]
    status: str
    created_at: datetime | None

    @classmethod
    def of(cls, row: dict[str, Any]) -> App:
        return cls(
            client_id=row["uid"],
            name=row["name"],
            redirect_uris=list(row.get("redirectUris") or []),
            scopes=list(row.get("scopes") or []),
            status=row.get("status") or "active",
            created_at=row.get("createdAt"),
        )


@strawberry.type(description="One requested scope in words.")
class ScopeRequest:
    scope: str
    category: str
    label: str
    sensitive: bool


@strawberry.type(description="An app's authorisation request, as the patient sees it.")
class AppAuthorization:
    client_id: str
    name: str
    redirect_uri: str
    scopes: list[ScopeRequest]


@strawberry.type(description="Where the browser goes next (the app's redirect URI).")
class AppDecision:
    redirect_to: str


@strawberry.input
class GrantInput:
    grantee_type: str = strawberry.field(
        description="practitioner | organisation | app | research | everyone"
    )
    grantee: str | None = None
    categories: list[str] = strawberry.field(default_factory=lambda: ["all"])
    excluded: list[str] = strawberry.field(default_factory=list)
    purposes: list[str] = strawberry.field(default_factory=lambda: ["treatment"])
    start: datetime | None = None
    end: datetime | None = None


@strawberry.input
class RestrictInput:
    grantee_type: str = "everyone"
    grantee: str | None = None
    categories: list[str] = strawberry.field(default_factory=list)


@strawberry.input
class AppInput:
    name: str
    redirect_uris: list[str]
    scopes: list[str]


async def access_log(info: Info, person: str, first: int, before: int | None) -> list[AccessEvent]:
    rows = await in_thread(_consents(info).access_log, person, first=first, before=before)
    return [AccessEvent.of(r) for r in rows]


@strawberry.type
class ConsentQuery:
    @strawberry.field(description="Who the request's token stands for.")
    def me(self, info: Info) -> Me:
        p = info.context.access.principal
        return Me(
            subject=p.subject,
            role=p.role.value,
            organisation=p.organisation,
            patient_id=strawberry.ID(p.patient) if p.patient else None,
            app=p.app,
            scopes=list(p.scopes),
            purpose=purpose_of(p).value,
            token_error=p.error,
        )

    @strawberry.field(description="The data categories consents name.")
    def data_categories(self) -> list[DataCategory]:
        return [
            DataCategory(id=c.value, label=_LABELS[c], sensitive=c in SENSITIVE) for c in Category
        ]

    @strawberry.field(
        description="A patient's consents, every state, newest first (the patient or a steward)."
    )
    async def consents(self, info: Info, patient_id: strawberry.ID) -> list[Consent]:
        rows = await in_thread(_consents(info).consents, str(patient_id))
        return [Consent.of(r) for r in rows]

    @strawberry.field(
        description="Who read or changed a patient's data (the patient or a steward)."
    )
    async def access_log(
        self, info: Info, patient_id: strawberry.ID, first: int = 50, before: int | None = None
    ) -> list[AccessEvent]:
        return await access_log(info, str(patient_id), first, before)

    @strawberry.field(description="The whole audit trail, filtered (data stewards).")
    async def audit_trail(
        self,
        info: Info,
        patient_id: strawberry.ID | None = None,
        actor: str | None = None,
        outcome: str | None = None,
        first: int = 100,
        before: int | None = None,
    ) -> list[AccessEvent]:
        rows = await in_thread(
            _consents(info).audit_trail,
            person=str(patient_id) if patient_id else None,
            actor=actor,
            outcome=outcome,
            first=first,
            before=before,
        )
        return [AccessEvent.of(r) for r in rows]

    @strawberry.field(description="Break-glass episodes (data stewards review them).")
    async def break_glass_episodes(self, info: Info, unreviewed_only: bool = True) -> list[Consent]:
        rows = await in_thread(
            _consents(info).break_glass_episodes, unreviewed_only=unreviewed_only
        )
        return [Consent.of(r) for r in rows]

    @strawberry.field(description="Clinics a patient may grant access to or restrict.")
    async def organisations(self, info: Info) -> list[Organisation]:
        names = await in_thread(_consents(info).organisations)
        return [Organisation(id=strawberry.ID(uid), name=name) for uid, name in names.items()]

    @strawberry.field(description="Registered apps.")
    async def apps(self, info: Info) -> list[App]:
        return [App.of(r) for r in await in_thread(_consents(info).apps)]

    @strawberry.field(
        description="An app's authorisation request, checked against its registration."
    )
    async def app_authorization(
        self, info: Info, client_id: str, scope: str, redirect_uri: str
    ) -> AppAuthorization:
        req = await in_thread(_consents(info).authorisation_request, client_id, scope, redirect_uri)
        scopes = []
        for text in req.scopes:
            cat = parse_scope(text).category
            scopes.append(
                ScopeRequest(
                    scope=text, category=cat.value, label=_LABELS[cat], sensitive=cat in SENSITIVE
                )
            )
        return AppAuthorization(
            client_id=req.client_id, name=req.name, redirect_uri=req.redirect_uri, scopes=scopes
        )


@strawberry.type
class ConsentMutation:
    @strawberry.mutation(
        description="The patient grants access (to a practitioner, organisation, app, the research "
        "bank or everyone)."
    )
    async def grant_access(
        self, info: Info, patient_id: strawberry.ID, input: GrantInput
    ) -> Consent:
        row = await in_thread(
            _consents(info).grant,
            str(patient_id),
            grantee_type=input.grantee_type,
            grantee=input.grantee,
            categories=input.categories,
            excluded=input.excluded,
            purposes=input.purposes,
            start=input.start,
            end=input.end,
        )
        return Consent.of(row)

    @strawberry.mutation(
        description="The patient hides data categories (from everyone or one grantee)."
    )
    async def restrict_access(
        self, info: Info, patient_id: strawberry.ID, input: RestrictInput
    ) -> Consent:
        row = await in_thread(
            _consents(info).restrict,
            str(patient_id),
            grantee_type=input.grantee_type,
            grantee=input.grantee,
            categories=input.categories,
        )
        return Consent.of(row)

    @strawberry.mutation(
        description="The patient revokes a grant, restriction or app authorisation; effective on "
        "the next request."
    )
    async def revoke_consent(
        self, info: Info, patient_id: strawberry.ID, consent_id: strawberry.ID
    ) -> Consent:
        row = await in_thread(_consents(info).revoke, str(patient_id), str(consent_id))
        return Consent.of(row)

    @strawberry.mutation(
        description="Emergency access to one patient: time-limited, flagged for review, reason "
        "required."
    )
    async def break_glass(self, info: Info, patient_id: strawberry.ID, reason: str) -> Consent:
        row = await in_thread(_consents(info).break_glass, str(patient_id), reason)
        return Consent.of(row)

    @strawberry.mutation(description="A data steward marks a break-glass episode reviewed.")
    async def review_break_glass(self, info: Info, consent_id: strawberry.ID) -> Consent:
        row = await in_thread(_consents(info).review_break_glass, str(consent_id))
        return Consent.of(row)

    @strawberry.mutation(description="Register a third-party app (public client; PKCE).")
    async def register_app(self, info: Info, input: AppInput) -> App:
        row = await in_thread(
            _consents(info).register_app,
            name=input.name,
            redirect_uris=input.redirect_uris,
            scopes=input.scopes,
        )
        return App.of(row)

    @strawberry.mutation(
        description="The patient approves an app's request: a one-time code goes to its redirect "
        "URI."
    )
    async def approve_app(
        self,
        info: Info,
        patient_id: strawberry.ID,
        client_id: str,
        scope: str,
        redirect_uri: str,
        code_challenge: str,
        state: str | None = None,
        code_challenge_method: str = "S256",
    ) -> AppDecision:
        issued = await in_thread(
            _consents(info).approve_app,
            str(patient_id),
            client_id=client_id,
            scope=scope,
            redirect_uri=redirect_uri,
            state=state,
            code_challenge=code_challenge,
            code_challenge_method=code_challenge_method,
        )
        return AppDecision(redirect_to=issued.redirect_to)

    @strawberry.mutation(description="The patient denies an app's request.")
    async def deny_app(
        self, info: Info, client_id: str, redirect_uri: str, state: str | None = None
    ) -> AppDecision:
        issued = await in_thread(
            _consents(info).deny_app, client_id=client_id, redirect_uri=redirect_uri, state=state
        )
        return AppDecision(redirect_to=issued.redirect_to)


QUERIES: tuple[type, ...] = (ConsentQuery,)
MUTATIONS: tuple[type, ...] = (ConsentMutation,)
