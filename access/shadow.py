"""Checked access to the digital shadow: vitals, trends, scores, data requests, alerts and the
population view. Every method checks the principal before any query runs; the resolvers never
call ``shadow/`` or ``graph/shadow.py`` directly."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from access.changes import ChangeAccess, ChangeFeed
from access.consent import CONDITION_FACTS, LAB_FACTS, MEDICATION_FACTS, VITAL_FACTS
from access.policy import Action, Principal
from access.records import RecordAccess
from graph import shadow as q
from shadow import engine
from shadow.metrics import METRICS
from shadow.population import PopulationRow, stratify
from shadow.service import ALERT_KIND, TREND_PERIOD, ShadowService, metric_history
from shadow.trends import WINDOWS, TrendSummary, summarize


class UnknownMetricError(ValueError):
    pass


class AlertStateError(ValueError):
    """An alert that does not exist, or is not in a state the transition allows."""


class ShadowAccess:
    """One principal's checked view of the shadow (one per request).

    ``clock`` is the shadow's "now" in epoch seconds (``settings.shadow.clock``; the demo runs
    at its sample's reference date); ``None`` means the wall clock."""

    def __init__(
        self,
        records: RecordAccess,
        service: ShadowService,
        *,
        clock: int | None = None,
        feed: ChangeFeed | None = None,
    ) -> None:
        self._records = records
        self.service = service
        self.clock = clock
        self._feed = feed

    @property
    def principal(self) -> Principal:
        return self._records.principal

    def now(self) -> int:
        return self.clock if self.clock is not None else int(time.time())

    def _driver(self) -> tuple[Any, str | None]:
        reader = self._records.reader
        return reader.driver, reader.database

    # -- reads --------------------------------------------------------------------------------

    def vitals(self, person: str) -> list[engine.Vital]:
        self._records.require_person(person, "shadow.vitals", VITAL_FACTS)
        data = self.service.read([person], self.now()).get(person)
        return [] if data is None else engine.vitals(data)

    def trends(
        self, person: str, metrics: Sequence[str], window: str, until: int | None
    ) -> list[tuple[TrendSummary, list[Any]]]:
        """Per metric: the window's summary (slope, variability, the person's own baseline) and
        its points; metrics without any point in the window are left out."""
        self._records.require_person(person, "shadow.trends", VITAL_FACTS, LAB_FACTS)
        if window not in WINDOWS:
            raise UnknownMetricError(f"unknown window {window!r}; known: {', '.join(WINDOWS)}")
        unknown = [m for m in metrics if m not in METRICS]
        if unknown:
            known = ", ".join(sorted(METRICS))
            raise UnknownMetricError(f"unknown metric(s) {', '.join(unknown)}; known: {known}")
        end = until if until is not None else self.now()
        width = WINDOWS[window]
        baseline = min(width * 4, 365 * 86_400)
        driver, database = self._driver()
        history = metric_history(
            driver,
            person,
            metrics,
            since=end - width - baseline,
            until=end,
            every=TREND_PERIOD[window],
            database=database,
        )
        out = []
        for metric in metrics:
            pts = history[metric]
            summary = summarize(metric, pts, until=end, window_s=width, baseline_s=baseline)
            if summary.points:
                out.append((summary, [p for p in pts if p.t >= end - width]))
        return out

    def scores(self, person: str) -> list[dict[str, Any]]:
        self._records.require_person(
            person, "shadow.scores", VITAL_FACTS, LAB_FACTS, CONDITION_FACTS, MEDICATION_FACTS
        )
        driver, database = self._driver()
        return q.person_scores(driver, person, database=database)

    def data_requests(self, person: str, status: str | None) -> list[dict[str, Any]]:
        self._records.require_person(person, "shadow.dataRequests", CONDITION_FACTS, LAB_FACTS)
        driver, database = self._driver()
        return q.person_requests(driver, person, status=status, database=database)

    def domain_requests(self, domain: str, status: str | None, limit: int) -> list[dict[str, Any]]:
        """What the shadow asks of one domain (the domain's integration engine reads this)."""
        self._records.require(Action.READ_DATA_REQUESTS)
        driver, database = self._driver()
        rows = q.domain_requests(driver, domain, status=status, limit=limit, database=database)
        # a request names the person and what is missing ("HbA1c, for diabetes"): consent
        seen = self._records.guard.permitted(
            [str(r["person"]) for r in rows], "shadow.dataRequests", CONDITION_FACTS
        )
        return [r for r in rows if r["person"] in seen]

    def alerts(
        self, person: str, states: Sequence[str] | None, since: datetime | None = None
    ) -> list[dict[str, Any]]:
        self._records.require_person(person, "shadow.alerts", VITAL_FACTS, LAB_FACTS)
        driver, database = self._driver()
        return q.person_alerts(driver, person, states=states, since=since, database=database)

    def population(self, domain: str) -> list[PopulationRow]:
        self._records.require(Action.READ_POPULATION)
        driver, database = self._driver()
        rows = q.population(driver, domain, database=database)
        persons = [str(r["person"]) for r in rows]
        guard = self._records.guard
        seen = set(persons)
        for needs in (VITAL_FACTS, LAB_FACTS, CONDITION_FACTS):  # scores, alerts, gaps
            seen &= guard.permitted(persons, "shadow.population", needs)
        return stratify([r for r in rows if r["person"] in seen])

    # -- writes -------------------------------------------------------------------------------

    def set_alert_state(self, uid: str, to: str, note: str) -> dict[str, Any]:
        """Acknowledge or resolve an alert; the trail records who and why."""
        self._records.require(Action.MANAGE_ALERTS)
        driver, database = self._driver()
        current = q.alert_by_uid(driver, uid, database=database)
        if current is None:
            raise AlertStateError(f"no alert {uid!r}")
        # the alert is the person's data: their consent must cover its reader
        self._records.require_person(
            str(current["person"]),
            "shadow.alert",
            VITAL_FACTS,
            LAB_FACTS,
            action=Action.MANAGE_ALERTS,
        )
        row = q.set_alert_state(
            driver, uid, to=to, actor=self.principal.subject, note=note, database=database
        )
        if row is None:
            current = q.alert_by_uid(driver, uid, database=database) or current
            raise AlertStateError(f"alert {uid!r} is {current['state']}: cannot become {to}")
        self._records.guard.note_write(str(current["person"]), f"alert:{to}")
        if row.get("record"):  # every screen showing the alert hears of the new state
            ChangeAccess.for_access(self._records, feed=self._feed).emit(
                {row["record"]: {ALERT_KIND}}, source=f"shadow:alert:{to}"
            )
        return row
