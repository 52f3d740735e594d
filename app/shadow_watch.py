"""The live shadow of the web process: recompute whoever the change feed says has new data.

:class:`ShadowWatcher` listens to the process's change feed (``app/notify.py``) for every
person. An event with a data kind (not the shadow's own ``Alert``/``DataRequest``) marks its
person dirty; the evaluator recomputes all dirty persons in one batch (``ShadowService``), which
stores alerts and requests and writes their change events to the outbox, then wakes the feed so
subscribers hear of a new alert at once. With a device streaming readings, the path is
ingest -> outbox -> feed -> watcher -> recompute -> outbox -> feed -> subscriber; the benchmark
(``bench/bench_shadow.py``) measures it end to end.

Silence produces no event, so a second loop re-evaluates every person with a device series
every ``silence_check_interval_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from app.notify import Notifier
from app.settings import ShadowSettings
from graph.outbox import ChangeEventRow
from shadow.service import OWN_KINDS, RecomputeReport, ShadowService

log = logging.getLogger(__name__)


class ShadowWatcher:
    def __init__(self, notifier: Notifier, service: ShadowService, settings: ShadowSettings):
        self.notifier = notifier
        self.service = service
        self.settings = settings
        self.report = RecomputeReport()
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        #: Time of the last finished recomputation (monotonic) and how many have finished.
        self.last_pass: float | None = None
        self.passes = 0
        self._running = False

    async def start(self) -> None:
        self.notifier.listen(self._on_event)
        self._tasks = [
            asyncio.create_task(self._evaluate(), name="medshadow-shadow-evaluate"),
            asyncio.create_task(self._silence(), name="medshadow-shadow-silence"),
        ]

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    @property
    def idle(self) -> bool:
        """Nobody waits to be recomputed and no recomputation is running."""
        return not self._dirty and not self._running

    def mark(self, persons: set[str]) -> None:
        self._dirty.update(persons)
        self._wake.set()

    def _on_event(self, event: ChangeEventRow) -> None:
        if event.person_uid and set(event.kinds) - OWN_KINDS:
            self.mark({event.person_uid})

    async def _evaluate(self) -> None:
        while not self._stopping:
            await self._wake.wait()
            self._wake.clear()
            while self._dirty and not self._stopping:
                batch = sorted(self._dirty)[: self.settings.batch_size]
                self._dirty.difference_update(batch)
                self._running = True
                try:
                    await asyncio.to_thread(
                        self.service.recompute,
                        batch,
                        as_of=self.settings.clock_epoch,
                        report=self.report,
                        source="shadow:live",
                    )
                except Exception:  # a bad batch must not stop live alerting for everyone else
                    log.exception("shadow: recomputing %d person(s) failed", len(batch))
                finally:
                    self._running = False
                self.last_pass = time.monotonic()
                self.passes += 1
                self.notifier.wake()

    async def _silence(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.settings.silence_check_interval_s)
            try:
                persons = await asyncio.to_thread(self.service.persons_with_devices)
            except Exception:
                log.exception("shadow: listing persons with devices failed")
                continue
            self.mark(set(persons))
