"""Consent enforcement and the audit trail of one request: the one gate for personal data.

:class:`RecordAccess` (``access/policy.py``) owns one :class:`ConsentGuard`; every checked
access class (shadow, drugs, readings, change feed, research export) reads a person's data only
after ``guard.require`` / ``guard.permitted`` / ``guard.filter`` said yes, and every answer —
allowed, narrowed or denied — lands in the request's :class:`AuditTrail`, written once when the
request ends (``flush``).

Consents are read fresh for every request (one round trip for the persons it touches), so a
revocation takes effect on the next request. A denial raises :class:`PatientAccessDeniedError`,
whose message is the same whether or not the person exists.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from access.consent import (
    Category,
    Consent,
    Decision,
    Model,
    Purpose,
    Who,
    decide,
    fact_categories,
    scope_categories,
)
from access.policy import AccessDeniedError, Action, Principal, Role
from graph import consent as store
from graph.consent import Writer
from graph.reader import GraphReader

DEMOGRAPHICS = frozenset({Category.DEMOGRAPHICS})
_DENIED_DETAIL = (
    "no consent of that patient covers you for this purpose, or there is no such patient"
)


class PatientAccessDeniedError(AccessDeniedError):
    """A person's data was refused; says so without saying whether the person exists."""

    def __init__(self, action: Action, detail: str = _DENIED_DETAIL) -> None:
        super().__init__(action, detail)


def who_of(principal: Principal) -> Who:
    """The consent policy's view of a principal."""
    kind = {
        Role.CLINICIAN: "practitioner",
        # an organisation's integration engine hears of changes as its clinicians would
        Role.INTEGRATOR: "practitioner",
        Role.PATIENT: "patient",
        Role.APP: "app",
        Role.STEWARD: "steward",
        Role.ADMIN: "admin",
    }.get(principal.role, "none")
    scopes = frozenset[Category]()
    if principal.role is Role.APP:
        try:
            scopes = scope_categories(principal.scopes)
        except ValueError:
            scopes = frozenset()
    return Who(
        kind=kind,
        subject=principal.subject,
        organisation=principal.organisation,
        patient=principal.patient,
        app=principal.app,
        authorisation=principal.authorisation,
        scopes=scopes,
    )


def purpose_of(principal: Principal) -> Purpose:
    return {
        Role.CLINICIAN: Purpose.TREATMENT,
        Role.INTEGRATOR: Purpose.TREATMENT,  # a clinic's system, for its clinicians
        Role.PATIENT: Purpose.SELF,
        Role.APP: Purpose.APP,
        Role.RESEARCHER: Purpose.RESEARCH,
    }.get(principal.role, Purpose.OPERATIONS)


def writer_of(
    principal: Principal, purpose: Purpose | None = None, *, request: str | None = None
) -> Writer:
    """A principal as the writer ``graph.registry.publish`` audits."""
    return Writer(
        principal.subject,
        principal.role.value,
        (purpose or purpose_of(principal)).value,
        organisation=principal.organisation,
        app=principal.app,
        request=request,
    )


@dataclass
class AuditTrail:
    """The audit events of one request, merged per (person, action, outcome), written once."""

    principal: Principal
    purpose: Purpose
    request: str = field(default_factory=lambda: f"req:{uuid.uuid4()}")
    _events: dict[tuple[str | None, str, str], dict[str, Any]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def note(
        self,
        person: str | None,
        action: str,
        what: str,
        *,
        outcome: str = "allowed",
        basis: str | None = None,
        reason: str | None = None,
        break_glass: bool = False,
        purpose: Purpose | None = None,
    ) -> None:
        key = (person, action, outcome)
        with self._lock:
            event = self._events.get(key)
            if event is None:
                event = self._events[key] = self.writer().event(
                    person,
                    action,
                    "",
                    outcome=outcome,
                    basis=basis,
                    purpose=(purpose or self.purpose).value,
                    break_glass=break_glass,
                )
                event.update(whats=[], reasons=[])
            if what not in event["whats"]:
                event["whats"].append(what)
            if reason and reason not in event["reasons"]:
                event["reasons"].append(reason)

    @property
    def pending(self) -> bool:
        return bool(self._events)

    def writer(self) -> Writer:
        """The request's principal as the writer of what it publishes (same request id)."""
        return writer_of(self.principal, self.purpose, request=self.request)

    def take(self) -> list[dict[str, Any]]:
        """The pending events as stored rows (and forget them)."""
        with self._lock:
            events, self._events = list(self._events.values()), {}
        for e in events:
            e["what"] = ", ".join(e.pop("whats"))
            e["reason"] = "; ".join(e.pop("reasons")) or None
        return events


class ConsentGuard:
    """Consent decisions for one principal within one request (cached for that request only)."""

    def __init__(
        self,
        reader: GraphReader,
        principal: Principal,
        *,
        model: Model = Model.OPT_OUT,
        audit: AuditTrail | None = None,
        clock: Callable[[], datetime] | None = None,
        enforce: bool = True,
    ) -> None:
        self._reader = reader
        self.principal = principal
        self.who = who_of(principal)
        self.purpose = purpose_of(principal)
        self.model = model
        self.audit = audit
        self.enforce = enforce
        self._clock = clock or (lambda: datetime.now(UTC))
        self._decisions: dict[str, Decision] = {}
        self._lock = threading.Lock()

    # -- decisions ---------------------------------------------------------------------------
    def decisions(self, uids: Iterable[str]) -> dict[str, Decision]:
        """The decision for each person (one round trip for those not decided yet)."""
        wanted = list(dict.fromkeys(uids))
        if not self.enforce:  # the benchmark's baseline: no consent read at all
            return {u: Decision(u, self.purpose) for u in wanted}
        with self._lock:
            missing = [u for u in wanted if u not in self._decisions]
        if missing:
            self._reader.round_trips += 1
            inputs = store.decision_inputs(
                self._reader.driver, missing, database=self._reader.database
            )
            now = self._clock()
            fresh = {}
            for uid in missing:
                consents, domains = inputs.get(uid, ([], []))
                if uid not in inputs:  # no such person: nothing to permit
                    fresh[uid] = Decision(uid, self.purpose)
                    continue
                fresh[uid] = decide(
                    self.who,
                    uid,
                    [Consent.from_row(c) for c in consents],
                    purpose=self.purpose,
                    now=now,
                    model=self.model,
                    care_domains=domains,
                )
            with self._lock:
                self._decisions.update(fresh)
        with self._lock:
            return {u: self._decisions[u] for u in wanted}

    def forget(self, uids: Iterable[str]) -> None:
        """Drop cached decisions (a long subscription re-reads consent for each event)."""
        with self._lock:
            for uid in uids:
                self._decisions.pop(uid, None)

    def decision(self, uid: str) -> Decision:
        return self.decisions([uid])[uid]

    def allows(self, decision: Decision, cats: frozenset[Category]) -> bool:
        return not self.enforce or decision.allows(cats)

    # -- the checks --------------------------------------------------------------------------
    def require(
        self,
        uid: str,
        what: str,
        *needs: frozenset[Category],
        action: Action = Action.READ_PATIENT,
        verb: str = "read",
    ) -> Decision:
        """Raise unless the principal may read ``what`` of ``uid`` in every category set named."""
        decision = self.decision(uid)
        wanted = needs or (DEMOGRAPHICS,)
        refused = [n for n in wanted if not self.allows(decision, n)]
        if refused:
            self._note(decision, verb, what, outcome="denied", reason=_names(refused))
            raise PatientAccessDeniedError(action)
        self._note(decision, verb, what)
        return decision

    def permitted(self, uids: Sequence[str], what: str, needs: frozenset[Category]) -> set[str]:
        """Which of these persons the principal may read ``what`` of (the rest are noted denied)."""
        out = set()
        for uid, decision in self.decisions(uids).items():
            if self.allows(decision, needs):
                out.add(uid)
                self._note(decision, "read", what)
            else:
                self._note(decision, "read", what, outcome="denied", reason=_names([needs]))
        return out

    def readable(self, uids: Sequence[str], what: str) -> list[str]:
        """The persons some consent lets the principal read at all (the rest noted denied)."""
        out = []
        for uid, decision in self.decisions(uids).items():
            if decision.any or not self.enforce:
                out.append(uid)
            else:
                self._note(decision, "read", what, outcome="denied", reason="no consent")
        return out

    def filter(
        self,
        uids: Sequence[str],
        rows: Iterable[Mapping[str, Any]],
        what: str,
        categories: RowCategories,
        *,
        person_key: str = "uid",
    ) -> list[dict[str, Any]]:
        """Rows of readable persons the principal may see, each by its own categories.

        A person with rows withheld is noted so in the audit trail; the answer itself never
        says whether anything was withheld (``Patient.consentNotice`` says what *may* be).
        Rows are categorised only for persons whose consents restrict something, and scanned
        only for the sensitive categories those consents name.
        """
        decisions = self.decisions(uids)
        # per person: None (everything readable) or (decision, sensitive categories to look for)
        checks = {
            uid: None if not self.enforce or d.unrestricted else (d, d.sensitive)
            for uid, d in decisions.items()
        }
        kept, withheld = [], set()
        for row in rows:
            uid = row[person_key]
            check = checks[uid]
            if check is None or check[0].allows(categories(row, check[1])):
                kept.append(dict(row))
            else:
                withheld.add(uid)
        for uid in uids:
            reason = "entries withheld by consent" if uid in withheld else None
            self._note(decisions[uid], "read", what, reason=reason)
        return kept

    def listing(self) -> dict[str, Any]:
        """Cypher parameters narrowing a patient list or search to persons the principal sees.

        ``only`` (a uid list, or null: no such bound), ``careOrg`` (persons with a record in
        that domain are in, opt-in model) and ``hidden`` (persons whose restrictions close
        their demographics to this principal).
        """
        who = self.who
        if not self.enforce or who.kind in ("admin", "steward"):
            return {"only": None, "careOrg": None, "hidden": []}
        if who.kind in ("patient", "app"):
            return {"only": [who.patient] if who.patient else [], "careOrg": None, "hidden": []}
        if who.kind != "practitioner":
            return {"only": [], "careOrg": None, "hidden": []}
        driver, database = self._reader.driver, self._reader.database
        self._reader.round_trips += 1
        restricted = store.persons_with_consents(driver, kind="deny", database=database)
        hidden = [
            uid
            for uid, decision in self.decisions(restricted).items()
            if not decision.allows(DEMOGRAPHICS)
        ]
        if self.model is Model.OPT_OUT:
            return {"only": None, "careOrg": None, "hidden": hidden}
        self._reader.round_trips += 1
        granted = store.persons_with_consents(driver, kind="permit", database=database)
        only = [
            uid
            for uid, decision in self.decisions(granted).items()
            if decision.allows(DEMOGRAPHICS)
        ]
        return {"only": only, "careOrg": who.organisation, "hidden": hidden}

    def note_write(self, uid: str | None, what: str) -> None:
        """A write that publishes no change (consents, alert states); data writes are audited
        by ``publish`` as :attr:`writer`."""
        if self.audit is not None:
            self.audit.note(uid, "write", what)

    @property
    def writer(self) -> Writer | None:
        """Who the request's writes are audited as (``publish``); None with audit off."""
        return self.audit.writer() if self.audit is not None else None

    def audit_note(
        self,
        uid: str | None,
        action: str,
        outcome: str,
        reason: str | None = None,
        *,
        what: str | None = None,
        flagged: bool = False,
        purpose: Purpose | None = None,
    ) -> None:
        """An event that is not a data read (consent change, break-glass, log read)."""
        if self.audit is not None:
            self.audit.note(
                uid,
                action,
                what or action,
                outcome=outcome,
                reason=reason,
                break_glass=flagged,
                purpose=purpose,
            )

    def _note(
        self,
        decision: Decision,
        verb: str,
        what: str,
        *,
        outcome: str = "allowed",
        reason: str | None = None,
    ) -> None:
        if self.audit is None:
            return
        self.audit.note(
            decision.person,
            verb,
            what,
            outcome=outcome,
            basis=decision.basis if outcome == "allowed" else None,
            reason=reason,
            break_glass=decision.break_glass is not None,
            purpose=decision.purpose,
        )

    def flush(self) -> int:
        """Write the request's audit events (one transaction); how many were written."""
        if self.audit is None or not self.audit.pending:
            return 0
        rows = self.audit.take()
        return store.append_audit(self._reader.driver, rows, database=self._reader.database)


def _names(needs: Iterable[frozenset[Category]]) -> str:
    return "not covered: " + ", ".join(sorted({c.value for n in needs for c in n}))


#: A row's categories, scanning free text only for the sensitive categories given.
RowCategories = Callable[[Mapping[str, Any], frozenset[Category]], frozenset[Category]]


def fact_row_categories(label: str) -> RowCategories:
    """Categories of a facts-query row (``fact``, ``codes``) of one label."""

    def cats(row: Mapping[str, Any], looking_for: frozenset[Category]) -> frozenset[Category]:
        return fact_categories([label], row.get("fact") or {}, row.get("codes") or [], looking_for)

    return cats


def timeline_row_categories(
    row: Mapping[str, Any], looking_for: frozenset[Category]
) -> frozenset[Category]:
    return fact_categories(
        row.get("labels") or [], row.get("fact") or {}, row.get("codes") or [], looking_for
    )
