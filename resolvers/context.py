"""Per-request GraphQL context: settings, the checked record access and the DataLoaders."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import strawberry
from strawberry.dataloader import DataLoader

from access.changes import ChangeFeed
from access.consent import Model
from access.mapping import Suggester
from access.policy import Principal
from access.records import RecordAccess
from access.terminology import SemanticSearch
from drugs.service import DrugSafety
from graph.connection import Driver
from graph.reader import ALL_FACTS, FactFilter
from ontology.model import Label
from shadow.service import ShadowService

T = TypeVar("T")


async def in_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """The Neo4j driver here is synchronous; keep the event loop free while it waits."""
    return await asyncio.to_thread(fn, *args, **kwargs)


@dataclass
class Loaders:
    """One DataLoader per (kind of read, arguments): a page of patients costs one query each."""

    access: RecordAccess
    _cache: dict[Any, DataLoader[str, Any]] = field(default_factory=dict)

    def _loader(self, key: Any, fn: Callable[[list[str]], list[Any]]) -> DataLoader[str, Any]:
        loader = self._cache.get(key)
        if loader is None:

            async def batch(uids: list[str]) -> Sequence[Any]:
                return await in_thread(fn, uids)

            loader = DataLoader(load_fn=batch)
            self._cache[key] = loader
        return loader

    def persons(self) -> DataLoader[str, Any]:
        """Per uid the person; a denied uid's ``load`` raises the (existence-blind) denial."""

        def fetch(uids: list[str]) -> list[Any]:
            found = self.access.persons(uids)
            return [found.get(uid) for uid in uids]

        return self._loader("persons", fetch)

    def records(self) -> DataLoader[str, Any]:
        def fetch(uids: list[str]) -> list[Any]:
            grouped: dict[str, list[dict[str, Any]]] = {uid: [] for uid in uids}
            for row in self.access.records(uids):
                grouped[row["uid"]].append(row)
            return [grouped[uid] for uid in uids]

        return self._loader("records", fetch)

    def facts(self, label: Label, flt: FactFilter = ALL_FACTS) -> DataLoader[str, Any]:
        def fetch(uids: list[str]) -> list[Any]:
            grouped: dict[str, list[dict[str, Any]]] = {uid: [] for uid in uids}
            for row in self.access.facts(label, uids, flt):
                grouped[row["uid"]].append(row)
            return [grouped[uid] for uid in uids]

        return self._loader(("facts", label, flt), fetch)

    def timeline(self, key: Any, fn: Callable[[list[str]], list[Any]]) -> DataLoader[str, Any]:
        return self._loader(("timeline", key), fn)


@dataclass
class Context:
    access: RecordAccess
    loaders: Loaders
    #: The process's live change stream (subscriptions); None outside the web server.
    feed: ChangeFeed | None = None
    #: The ``connection_init`` payload of a websocket (graphql-transport-ws sets it).
    connection_params: dict[str, Any] | None = None
    #: Concept search by meaning (nlp/ embeddings over the vector index), when configured.
    semantic: SemanticSearch | None = None
    #: The mapping engine (nlp/mapping.py) behind the workbench's suggestions, when configured.
    mapper: Suggester | None = None
    #: The digital shadow's service and its clock (epoch seconds; None: the wall clock).
    shadow: ShadowService | None = None
    shadow_clock: int | None = None
    #: Drug safety: interaction knowledge, medication reviews (clock: the shadow's).
    drugs: DrugSafety | None = None
    #: How long a break-glass access lasts (settings ``auth.break_glass_minutes``).
    break_glass_minutes: int = 60

    @classmethod
    def for_principal(
        cls,
        driver: Driver,
        principal: Principal,
        *,
        database: str | None = None,
        feed: ChangeFeed | None = None,
        semantic: SemanticSearch | None = None,
        mapper: Suggester | None = None,
        shadow: ShadowService | None = None,
        shadow_clock: int | None = None,
        drugs: DrugSafety | None = None,
        consent_model: str = "opt-out",
        audit: bool = True,
        enforce: bool = True,
        break_glass_minutes: int = 60,
    ) -> Context:
        """A fresh request context: its own round-trip counter, DataLoader caches, consent
        decisions and audit trail (``enforce=False`` only for the overhead benchmark)."""
        access = RecordAccess.for_driver(
            driver,
            principal,
            database=database,
            model=Model(consent_model),
            audit=audit,
            enforce=enforce,
        )
        return cls(
            access=access,
            loaders=Loaders(access),
            feed=feed,
            semantic=semantic,
            mapper=mapper,
            shadow=shadow,
            shadow_clock=shadow_clock,
            drugs=drugs,
            break_glass_minutes=break_glass_minutes,
        )


Info = strawberry.Info[Context, None]
