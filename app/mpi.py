"""The master patient index as the app composes it: thresholds from settings."""

from __future__ import annotations

from app.settings import Settings
from graph.connection import Driver
from mpi.service import LinkReport, MasterIndex


def master_index(driver: Driver, settings: Settings) -> MasterIndex:
    return MasterIndex(
        driver,
        database=settings.neo4j.database,
        auto_threshold=settings.mpi.auto_threshold,
        review_threshold=settings.mpi.review_threshold,
    )


def link_pending(
    driver: Driver, *, database: str | None = None, settings: Settings | None = None
) -> LinkReport:
    """Link every Patient record that has no Person yet (after any write of new records)."""
    if settings is not None:
        return master_index(driver, settings).link_pending()
    return MasterIndex(driver, database=database).link_pending()
