"""Checked use of the master patient index: ``$match`` and the data steward's review queue.

Every GraphQL operation on identities goes through :class:`IdentityAccess`; the check runs
before the index reads anything, and each decision is recorded under the principal's subject.
"""

from __future__ import annotations

from typing import Any

from access.guard import DEMOGRAPHICS, ConsentGuard
from access.policy import Action, Principal, require
from access.records import RecordAccess
from graph import mpi as g
from identity.model import DemographicRecord
from mpi.service import Candidate, MasterIndex

#: Review-queue states a steward can filter by.
QUEUE_STATES = frozenset({"open", "confirmed", "rejected", "linked"})


class IdentityAccess:
    def __init__(
        self, index: MasterIndex, principal: Principal, *, guard: ConsentGuard | None = None
    ) -> None:
        self._index = index
        self.principal = principal
        self._guard = guard

    @classmethod
    def for_access(cls, access: RecordAccess) -> IdentityAccess:
        """For the same request (principal, driver, database) as ``access``."""
        reader = access.reader
        return cls(
            MasterIndex(reader.driver, database=reader.database, writer=access.guard.writer),
            access.principal,
            guard=access.guard,
        )

    @property
    def _by(self) -> str:
        return self.principal.subject

    def match(self, query: DemographicRecord, limit: int) -> list[Candidate]:
        require(self.principal, Action.MATCH_PATIENT)
        found = self._index.match(query, limit=limit)
        if self._guard is None:
            return found
        # a match names a person: only those whose consent lets the caller see them
        seen = self._guard.permitted([c.person for c in found], "match", DEMOGRAPHICS)
        return [c for c in found if c.person in seen]

    def review_queue(
        self, status: str | None, limit: int, after: tuple[float, str] | None
    ) -> tuple[list[dict[str, Any]], int]:
        require(self.principal, Action.REVIEW_LINKS)
        if status is not None and status not in QUEUE_STATES:
            raise ValueError(f"status must be one of {sorted(QUEUE_STATES)}")
        index = self._index
        items, total = g.review_queue(
            index.driver, status=status, limit=limit, after=after, database=index.database
        )
        if self._guard is not None:  # the steward reads these records' demographics: audited
            persons = {r.get("person") for i in items for r in i.get("records", ())}
            for person in sorted(p for p in persons if p):
                self._guard.audit_note(person, "read", "allowed", what="reviewQueue")
        return items, total

    def confirm(self, candidate: str, comment: str | None) -> str:
        require(self.principal, Action.REVIEW_LINKS)
        return self._index.confirm(candidate, by=self._by, comment=comment)

    def reject(self, candidate: str, comment: str | None) -> None:
        require(self.principal, Action.REVIEW_LINKS)
        self._index.reject(candidate, by=self._by, comment=comment)

    def unlink(self, record: str, comment: str | None) -> str:
        require(self.principal, Action.REVIEW_LINKS)
        return self._index.unlink(record, by=self._by, comment=comment)

    def decisions(self, record: str) -> list[dict[str, Any]]:
        require(self.principal, Action.REVIEW_LINKS)
        index = self._index
        return g.decisions_for_record(index.driver, record, database=index.database)
