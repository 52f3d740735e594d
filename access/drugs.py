"""Checked access to drug safety: list checks (no patient data), a person's medication review
and what-if prescriptions. Every method checks the principal before anything is read; the
resolvers never call ``drugs/`` or ``graph/drugs.py`` directly."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from access.consent import ALL_MEDICATIONS, CONDITION_FACTS, LAB_FACTS
from access.policy import Action
from access.records import RecordAccess
from drugs.service import DrugSafety, Review

#: Longest list ``interactions(drugs:)`` accepts (a check is pairwise: 50 drugs = 1,225 pairs).
MAX_DRUGS = 50


#: A review lists every active drug (sensitive ones too) and reads conditions and eGFR.
_REVIEW_NEEDS = (*ALL_MEDICATIONS, CONDITION_FACTS, LAB_FACTS)


class DrugAccess:
    def __init__(self, records: RecordAccess, service: DrugSafety, *, clock: int | None = None):
        self._records = records
        self.service = service
        self.clock = clock

    def now(self) -> int:
        return self.clock if self.clock is not None else int(time.time())

    def check(self, drugs: Sequence[str]) -> Review:
        self._records.require(Action.CHECK_INTERACTIONS)
        names = [d for d in (x.strip() for x in drugs) if d]
        if not names:
            raise ValueError("give at least one drug name or code")
        if len(names) > MAX_DRUGS:
            raise ValueError(f"at most {MAX_DRUGS} drugs per check (got {len(names)})")
        return self.service.check_names(names)

    def review(self, person: str) -> Review:
        self._records.require_person(person, "medicationReview", *_REVIEW_NEEDS)
        return self.service.review(person, self.now())

    def check_prescription(self, person: str, drug: str) -> Review:
        self._records.require_person(person, "checkPrescription", *_REVIEW_NEEDS)
        if not drug.strip():
            raise ValueError("name the proposed drug")
        return self.service.check_prescription(person, drug.strip(), self.now())

    def literature(self, review: Review) -> list[dict[str, Any]]:
        """Text-mined statements about the review's drug pairs: knowledge, not patient data,
        but only reachable from a check the principal was allowed to make."""
        return self.service.literature(review.items)
