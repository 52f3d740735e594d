"""Checked reads of the virtual EHR: role first (``access/policy.py``), then consent.

One :class:`RecordAccess` per request. Every method that returns a person's data asks the
request's :class:`ConsentGuard` first and filters what comes back by each entry's categories,
so a resolver cannot read around a patient's consent; the other checked access classes
(``access/*.py``) share this object's reader and guard.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from access.consent import Category, Model, fact_categories
from access.guard import (
    DEMOGRAPHICS,
    AuditTrail,
    ConsentGuard,
    PatientAccessDeniedError,
    fact_row_categories,
    purpose_of,
    timeline_row_categories,
)
from access.policy import AccessDeniedError, Action, Principal, require
from graph import mpi
from graph import reader as q
from graph.caregaps import person_gaps
from graph.connection import Driver
from graph.reader import FactFilter, GraphReader
from ontology.model import Label

CONDITIONS = frozenset({Category.CONDITIONS})


class RecordAccess:
    """Checked reads of the virtual EHR for one principal (one per request)."""

    def __init__(
        self, reader: GraphReader, principal: Principal, *, guard: ConsentGuard | None = None
    ) -> None:
        self._reader = reader
        self.principal = principal
        self.guard = guard or ConsentGuard(
            reader, principal, audit=AuditTrail(principal, purpose_of(principal))
        )

    @classmethod
    def for_driver(
        cls,
        driver: Driver,
        principal: Principal,
        *,
        database: str | None = None,
        model: Model = Model.OPT_OUT,
        audit: bool = True,
        enforce: bool = True,
    ) -> RecordAccess:
        reader = GraphReader(driver, database=database)
        trail = AuditTrail(principal, purpose_of(principal)) if audit else None
        guard = ConsentGuard(reader, principal, model=model, audit=trail, enforce=enforce)
        return cls(reader, principal, guard=guard)

    @property
    def round_trips(self) -> int:
        return self._reader.round_trips

    @property
    def reader(self) -> GraphReader:
        """The request's reader, shared with the other checked access classes (access/*.py)."""
        return self._reader

    def require(self, action: Action) -> None:
        require(self.principal, action)

    def require_person(
        self, uid: str, what: str, *needs: frozenset[Category], action: Action = Action.READ_PATIENT
    ) -> None:
        """Role allows ``action`` and the person's consent covers every category set named."""
        self.require(action)
        self.guard.require(uid, what, *needs, action=action)

    def persons(self, uids: Sequence[str]) -> dict[str, dict[str, Any] | AccessDeniedError | None]:
        """Per uid: the person, ``None`` (no such person, enforcement off) or the denial."""
        self.require(Action.READ_PATIENT)
        allowed = self.guard.permitted(uids, "Patient", DEMOGRAPHICS)
        rows = self._reader.read(q.PERSONS_BY_UID, {"uids": sorted(allowed)}) if allowed else []
        found: dict[str, dict[str, Any] | AccessDeniedError | None] = {
            uid: PatientAccessDeniedError(Action.READ_PATIENT) for uid in uids if uid not in allowed
        }
        by_uid = {r["person"]["uid"]: dict(r["person"]) for r in rows}
        for uid in allowed:
            found[uid] = by_uid.get(uid)
        return found

    def merged_into(self, uid: str) -> str | None:
        """The person a merged-away id now lives on, when the principal may see that person."""
        self.require(Action.READ_PATIENT)
        current, seen = uid, {uid}
        for _ in range(10):
            rows = self._reader.read(mpi.MERGED_INTO, {"uid": current})
            if not rows or rows[0]["person"] is None or rows[0]["person"] in seen:
                break
            current = str(rows[0]["person"])
            seen.add(current)
        if current == uid or current not in self.guard.permitted(
            [current], "Patient", DEMOGRAPHICS
        ):
            return None
        return current

    def search_persons(
        self, text: str | None, skip: int, limit: int
    ) -> tuple[list[dict[str, Any]], int]:
        self.require(Action.SEARCH_PATIENTS)
        lucene = q.lucene_query(text or "")
        visible = self.guard.listing()
        page = {"skip": skip, "limit": limit, **visible}
        if lucene:
            rows = self._reader.read(q.PERSONS_SEARCH, {"lucene": lucene, **page})
            total = self._reader.read(q.PERSONS_SEARCH_COUNT, {"lucene": lucene, **visible})
        else:
            rows = self._reader.read(q.PERSONS_PAGE, page)
            total = self._reader.read(q.PERSONS_COUNT, visible)
        persons = [dict(r["person"]) for r in rows]
        # the listing bound is a query filter; the decision per person is the gate (and audit)
        allowed = self.guard.permitted([p["uid"] for p in persons], "search", DEMOGRAPHICS)
        return [p for p in persons if p["uid"] in allowed], int(total[0]["n"])

    def records(self, uids: Sequence[str]) -> list[dict[str, Any]]:
        self.require(Action.READ_PATIENT)
        allowed = self.guard.permitted(uids, "records", DEMOGRAPHICS)
        if not allowed:
            return []
        rows = self._reader.read(q.RECORDS_OF_PERSONS, {"uids": sorted(allowed)})
        return [dict(r) for r in rows]

    def care_gaps(self, uid: str, status: str | None = None) -> list[dict[str, Any]]:
        """The person's care gaps (open first), as the last rule evaluation left them."""
        self.require_person(uid, "careGaps", CONDITIONS)
        gaps = person_gaps(self._reader.driver, uid, status=status, database=self._reader.database)
        decision = self.guard.decision(uid)
        looking_for = decision.sensitive
        return [
            g
            for g in gaps
            if self.guard.allows(
                decision, fact_categories(["Condition"], {"text": g.get("title")}, (), looking_for)
            )
        ]

    def facts(self, label: Label, uids: Sequence[str], flt: FactFilter) -> list[dict[str, Any]]:
        self.require(Action.READ_PATIENT)
        readable = self.guard.readable(uids, label.value)
        if not readable:
            return []
        rows = self._reader.read(q.facts_query(label, flt), q.fact_params(readable, flt))
        return self.guard.filter(readable, rows, label.value, fact_row_categories(label.value))

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
        readable = self.guard.readable(uids, "timeline")
        if not readable:
            return []
        params = {
            "uids": readable,
            "since": since,
            "until": until,
            "limit": first,
            "afterDate": after[0] if after else None,
            "afterUid": after[1] if after else None,
        }
        rows = self._reader.read(q.TIMELINE, params)
        return self.guard.filter(readable, rows, "timeline", timeline_row_categories)

    def flush_audit(self) -> int:
        return self.guard.flush()
