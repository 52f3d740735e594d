"""Checked access to the research data bank: only researchers and data stewards export."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from access.policy import Action, Principal, require
from graph.connection import Driver
from research.export import FORMATS, ExportReport, export


class ResearchAccess:
    def __init__(self, driver: Driver, principal: Principal, *, database: str | None = None):
        self._driver = driver
        self._database = database
        self.principal = principal

    def export(
        self,
        out_dir: Path,
        *,
        k: int = 5,
        formats: Sequence[str] = FORMATS,
        shift_days: int = 180,
        progress: Callable[[int, int], None] | None = None,
    ) -> ExportReport:
        require(self.principal, Action.EXPORT_RESEARCH)
        if k < 2:
            raise ValueError("k must be at least 2 for a release")
        return export(
            self._driver,
            out_dir,
            k=k,
            formats=formats,
            shift_days=shift_days,
            actor=self.principal.subject,
            database=self._database,
            progress=progress,
        )
