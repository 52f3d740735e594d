"""The one place that decides who may read what.

Every resolver reads patient data through :class:`RecordAccess`, never through ``graph/``
directly; its methods check the request's :class:`Principal` before any query runs. For now a
principal is a role taken from a bearer token in settings; patient consent plugs in here later
without touching a resolver.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from graph import mpi
from graph import reader as q
from graph.caregaps import person_gaps
from graph.connection import Driver
from graph.reader import FactFilter, GraphReader
from ontology.model import Label


class Role(StrEnum):
    CLINICIAN = "clinician"
    STEWARD = "steward"  # data steward: works the master patient index's review queue
    PATIENT = "patient"  # writes to their own portal account
    DEVICE = "device"  # an IoT cloud / device gateway pushing readings
    INTEGRATOR = "integrator"  # a domain's integration engine: webhooks, change feed
    TERMINOLOGIST = "terminologist"  # loads code systems, curates mappings
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
        }
    ),
    Role.STEWARD: frozenset(
        {Action.READ_PATIENT, Action.SEARCH_PATIENTS, Action.MATCH_PATIENT, Action.REVIEW_LINKS}
    ),
    Role.TERMINOLOGIST: frozenset(
        {
            Action.READ_TERMINOLOGY,
            Action.WRITE_TERMINOLOGY,
            Action.CURATE_MAPPINGS,
            Action.CHECK_INTERACTIONS,
        }
    ),
    Role.PATIENT: frozenset({Action.WRITE_PORTAL}),
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

    def __init__(self, action: Action) -> None:
        super().__init__(f"not allowed: {action.value}")
        self.action = action


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str
    role: Role

    @classmethod
    def from_token(
        cls, token: str | None, tokens: Mapping[str, str], anonymous_role: str
    ) -> Principal:
        """Map a bearer token to a principal; unknown tokens get no rights at all.

        A configured value is a role (``"clinician"``) or ``"<role>:<subject>"``: for a patient
        ``"patient:<portal account record uid>"``, the one account that token may write to.
        """
        if token is None:
            return cls("anonymous", Role(anonymous_role))
        value = tokens.get(token)
        if value is None:
            return cls("unknown-token", Role.NONE)
        role, _, subject = value.partition(":")
        return cls(subject or f"token:{role}", Role(role))


def require(principal: Principal, action: Action) -> None:
    """Raise :class:`AccessDeniedError` unless the principal's role allows ``action``."""
    if action not in _ALLOWED[principal.role]:
        raise AccessDeniedError(action)


class RecordAccess:
    """Checked reads of the virtual EHR for one principal (one per request)."""

    def __init__(self, reader: GraphReader, principal: Principal) -> None:
        self._reader = reader
        self.principal = principal

    @classmethod
    def for_driver(
        cls, driver: Driver, principal: Principal, *, database: str | None = None
    ) -> RecordAccess:
        return cls(GraphReader(driver, database=database), principal)

    @property
    def round_trips(self) -> int:
        return self._reader.round_trips

    @property
    def reader(self) -> GraphReader:
        """The request's reader, shared with the other checked access classes (access/*.py)."""
        return self._reader

    def require(self, action: Action) -> None:
        if action not in _ALLOWED[self.principal.role]:
            raise AccessDeniedError(action)

    def persons(self, uids: Sequence[str]) -> list[dict[str, Any]]:
        self.require(Action.READ_PATIENT)
        rows = self._reader.read(q.PERSONS_BY_UID, {"uids": list(uids)})
        return [dict(r["person"]) for r in rows]

    def merged_into(self, uid: str) -> str | None:
        """The person a merged-away person id now lives on (following later merges too)."""
        self.require(Action.READ_PATIENT)
        current, seen = uid, {uid}
        for _ in range(10):
            rows = self._reader.read(mpi.MERGED_INTO, {"uid": current})
            if not rows or rows[0]["person"] is None or rows[0]["person"] in seen:
                break
            current = str(rows[0]["person"])
            seen.add(current)
        return None if current == uid else current

    def search_persons(
        self, text: str | None, skip: int, limit: int
    ) -> tuple[list[dict[str, Any]], int]:
        self.require(Action.SEARCH_PATIENTS)
        lucene = q.lucene_query(text or "")
        if lucene:
            rows = self._reader.read(
                q.PERSONS_SEARCH, {"lucene": lucene, "skip": skip, "limit": limit}
            )
            total = self._reader.read(q.PERSONS_SEARCH_COUNT, {"lucene": lucene})[0]["n"]
        else:
            rows = self._reader.read(q.PERSONS_PAGE, {"skip": skip, "limit": limit})
            total = self._reader.read(q.PERSONS_COUNT, {})[0]["n"]
        return [dict(r["person"]) for r in rows], int(total)

    def records(self, uids: Sequence[str]) -> list[dict[str, Any]]:
        self.require(Action.READ_PATIENT)
        return [dict(r) for r in self._reader.read(q.RECORDS_OF_PERSONS, {"uids": list(uids)})]

    def care_gaps(self, uid: str, status: str | None = None) -> list[dict[str, Any]]:
        """The person's care gaps (open first), as the last rule evaluation left them."""
        self.require(Action.READ_PATIENT)
        return person_gaps(self._reader.driver, uid, status=status, database=self._reader.database)

    def facts(self, label: Label, uids: Sequence[str], flt: FactFilter) -> list[dict[str, Any]]:
        self.require(Action.READ_PATIENT)
        rows = self._reader.read(q.facts_query(label, flt), q.fact_params(uids, flt))
        return [dict(r) for r in rows]

    def timeline(
        self,
        uids: Sequence[str],
        *,
        since: datetime | None,
        until: datetime | None,
        first: int,
        after: tuple[datetime, str] | None,
    ) -> list[dict[str, Any]]:
        self.require(Action.READ_PATIENT)
        params = {
            "uids": list(uids),
            "since": since,
            "until": until,
            "limit": first,
            "afterDate": after[0] if after else None,
            "afterUid": after[1] if after else None,
        }
        return [dict(r) for r in self._reader.read(q.TIMELINE, params)]
