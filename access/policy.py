"""The one place that decides who may read what.

Roles decide what kind of operation a principal may attempt (:func:`require`); patient consent
decides whose data (``access/consent.py``, enforced by ``access/guard.py``). Every resolver
reads patient data through :class:`access.records.RecordAccess`, never through ``graph/``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    CLINICIAN = "clinician"
    STEWARD = "steward"  # data steward: works the master patient index's review queue
    PATIENT = "patient"  # writes to their own portal account
    DEVICE = "device"  # an IoT cloud / device gateway pushing readings
    INTEGRATOR = "integrator"  # a domain's integration engine: webhooks, change feed
    TERMINOLOGIST = "terminologist"  # loads code systems, curates mappings
    RESEARCHER = "researcher"  # runs de-identified exports of consenting patients
    APP = "app"  # a registered third-party app acting for the one patient who authorised it
    ADMIN = "admin"
    NONE = "none"


class Action(StrEnum):
    READ_PATIENT = "read_patient"
    SEARCH_PATIENTS = "search_patients"
    MATCH_PATIENT = "match_patient"  # regional patient index search ($match)
    REVIEW_LINKS = "review_links"  # read the review queue, confirm / reject / unlink
    WRITE_PORTAL = "write_portal"  # patient-entered data
    INGEST_READINGS = "ingest_readings"  # device readings (streaming endpoint)
    MANAGE_WEBHOOKS = "manage_webhooks"  # register webhooks, read the delivery log
    SUBSCRIBE_CHANGES = "subscribe_changes"  # GraphQL subscriptions to change events
    READ_TERMINOLOGY = "read_terminology"  # lookup, validate, subsume, expand, search, translate
    WRITE_TERMINOLOGY = "write_terminology"  # load code systems and concept maps
    CURATE_MAPPINGS = "curate_mappings"  # the mapping workbench: suggest, review, publish
    MANAGE_ALERTS = "manage_alerts"  # acknowledge / resolve the shadow's alerts
    READ_POPULATION = "read_population"  # an organisation's patients stratified by risk
    READ_DATA_REQUESTS = "read_data_requests"  # what the shadow asks of a domain
    CHECK_INTERACTIONS = "check_interactions"  # check a typed drug list (no patient data)
    MANAGE_CONSENT = "manage_consent"  # a patient's own grants, restrictions, app approvals
    BREAK_GLASS = "break_glass"  # emergency access to one patient, time-limited and flagged
    REVIEW_ACCESS = "review_access"  # every patient's audit trail, break-glass review
    EXPORT_RESEARCH = "export_research"  # the de-identified research data bank
    REGISTER_APP = "register_app"  # register a third-party app for the open API


_ALLOWED: Mapping[Role, frozenset[Action]] = {
    Role.CLINICIAN: frozenset(
        {
            Action.READ_PATIENT,
            Action.SEARCH_PATIENTS,
            Action.MATCH_PATIENT,
            Action.SUBSCRIBE_CHANGES,
            Action.READ_TERMINOLOGY,
            Action.MANAGE_ALERTS,
            Action.READ_POPULATION,
            Action.READ_DATA_REQUESTS,
            Action.CHECK_INTERACTIONS,
            Action.BREAK_GLASS,
            Action.REGISTER_APP,
        }
    ),
    # identity work and oversight: demographics only (consent policy), every audit trail
    Role.STEWARD: frozenset(
        {
            Action.READ_PATIENT,
            Action.SEARCH_PATIENTS,
            Action.MATCH_PATIENT,
            Action.REVIEW_LINKS,
            Action.REVIEW_ACCESS,
            Action.EXPORT_RESEARCH,
        }
    ),
    Role.TERMINOLOGIST: frozenset(
        {
            Action.READ_TERMINOLOGY,
            Action.WRITE_TERMINOLOGY,
            Action.CURATE_MAPPINGS,
            Action.CHECK_INTERACTIONS,
        }
    ),
    # their own record only (consent policy), their portal account, their consents
    Role.PATIENT: frozenset({Action.READ_PATIENT, Action.WRITE_PORTAL, Action.MANAGE_CONSENT}),
    Role.RESEARCHER: frozenset(
        {Action.EXPORT_RESEARCH, Action.READ_TERMINOLOGY, Action.REGISTER_APP}
    ),
    # the one patient who authorised it, within its scopes (consent policy)
    Role.APP: frozenset({Action.READ_PATIENT}),
    Role.DEVICE: frozenset({Action.INGEST_READINGS}),
    Role.INTEGRATOR: frozenset(
        {
            Action.MATCH_PATIENT,
            Action.MANAGE_WEBHOOKS,
            Action.SUBSCRIBE_CHANGES,
            Action.READ_DATA_REQUESTS,
        }
    ),
    Role.ADMIN: frozenset(Action),
    Role.NONE: frozenset(),
}


class AccessDeniedError(Exception):
    """Raised before any data is read; the message never says whether the data exists."""

    def __init__(self, action: Action, detail: str | None = None) -> None:
        super().__init__(f"not allowed: {action.value}" + (f" ({detail})" if detail else ""))
        self.action = action


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: from a verified JWT (``access/tokens.py``) or a development token."""

    subject: str
    role: Role
    #: A practitioner's organisation: the uid of the domain (clinic) they work for.
    organisation: str | None = None
    #: A patient's own person uid; for an app, the one patient who authorised it.
    patient: str | None = None
    #: A patient's portal account (record uid) they may write to.
    account: str | None = None
    #: An app's client id, the authorisation (consent uid) its token stands on, its scopes.
    app: str | None = None
    authorisation: str | None = None
    scopes: tuple[str, ...] = ()
    #: The token's id (``jti``) and why a presented token was refused (role NONE then).
    token_id: str | None = None
    error: str | None = None

    @classmethod
    def from_token(
        cls, token: str | None, tokens: Mapping[str, str], anonymous_role: str
    ) -> Principal:
        """Map a static development token to a principal; unknown tokens get no rights at all.

        A configured value is ``"role[:subject][@organisation]"``: for a patient
        ``"patient:<portal account record uid>"``, the one account that token may write to;
        for a practitioner ``"clinician:dr-rivera@mis:hospital-1"``.
        """
        if token is None:
            return cls("anonymous", Role(anonymous_role))
        value = tokens.get(token)
        if value is None:
            return cls("unknown-token", Role.NONE, error="unknown token")
        value, _, org = value.partition("@")
        role, _, subject = value.partition(":")
        return cls(
            subject or f"token:{role}",
            Role(role),
            organisation=org or None,
            account=subject if role == Role.PATIENT and subject else None,
        )


def require(principal: Principal, action: Action) -> None:
    """Raise :class:`AccessDeniedError` unless the principal's role allows ``action``."""
    if action not in _ALLOWED[principal.role]:
        raise AccessDeniedError(action, principal.error)
