"""The mapping workbench, checked: every operation requires ``curate_mappings`` (terminologists,
admins) before any query runs, and records who did it.

Suggestions come from a :class:`Suggester` (``nlp.mapping.MappingEngine`` in the process; the
seam keeps this module free of models). Without one, the workbench still lists, reviews,
publishes and imports; it says so when asked for suggestions.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from access.guard import writer_of
from access.policy import Action, Principal, require
from graph import mapping as g
from graph.connection import Driver
from graph.registry import publish
from terminology.conceptmap import (
    ConceptMapDoc,
    ConceptMapError,
    MapElement,
    MapProblem,
    from_fhir,
    to_fhir,
    to_sssom,
)
from terminology.curation import (
    AgreementReport,
    CurationError,
    agreement,
    check_equivalence,
    check_status,
    decision,
    map_name,
)
from terminology.sources import system_url

MAX_PAGE = 500
ExportFormat = Literal["fhir", "sssom"]
#: Called with (codes finished, codes in all).
Progress = Callable[[int, int], None]


class CandidateLike(Protocol):
    def as_dict(self) -> dict[str, Any]: ...


class Suggester(Protocol):
    """Ranked candidates for local codes in a target system (``nlp.mapping.MappingEngine``)."""

    def suggest(
        self,
        sources: Sequence[g.CodeProfile],
        target_system: str,
        *,
        k: int = 10,
        progress: Progress | None = None,
    ) -> Sequence[Sequence[CandidateLike]]: ...


@dataclass(frozen=True, slots=True)
class SuggestOutcome:
    codes: int
    changed: int
    seconds: float
    without_candidates: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Published:
    name: str
    version: str
    elements: int
    links: int
    facts_coded: int


@dataclass(frozen=True, slots=True)
class Rereview:
    flagged: int
    resuggested: int


class MappingAccess:
    """One principal's mapping workbench (one per request or CLI command)."""

    def __init__(
        self,
        driver: Driver,
        principal: Principal,
        *,
        suggester: Suggester | None = None,
        database: str | None = None,
    ) -> None:
        self._driver = driver
        self.principal = principal
        self.suggester = suggester
        self.database = database

    @property
    def reviewer(self) -> str:
        return self.principal.subject

    def _check(self) -> None:
        require(self.principal, Action.CURATE_MAPPINGS)

    # -- reads ---------------------------------------------------------------------------------

    def projects(self, workspace: str | None = None) -> list[dict[str, Any]]:
        """Per (workspace, source system, target system): mappings by status."""
        self._check()
        grouped: dict[tuple[str, str, str], dict[str, int]] = {}
        for row in g.status_counts(self._driver, workspace, database=self.database):
            key = (row["workspace"], row["sourceSystem"], row["targetSystem"])
            grouped.setdefault(key, {})[row["status"]] = int(row["n"])
        return [
            {"workspace": w, "sourceSystem": s, "targetSystem": t, "counts": counts}
            for (w, s, t), counts in sorted(grouped.items())
        ]

    def mappings(
        self, flt: g.MappingFilter, *, first: int = 50, offset: int = 0
    ) -> tuple[list[dict[str, Any]], int]:
        self._check()
        if not 1 <= first <= MAX_PAGE:
            raise CurationError(f"first must be between 1 and {MAX_PAGE}")
        if offset < 0:
            raise CurationError("offset must not be negative")
        for status in flt.statuses or ():
            check_status(status)
        flt = g.MappingFilter(
            workspace=flt.workspace,
            source_system=system_url(flt.source_system) if flt.source_system else None,
            target_system=system_url(flt.target_system) if flt.target_system else None,
            statuses=flt.statuses,
            reviewer=flt.reviewer,
            min_score=flt.min_score,
            max_score=flt.max_score,
            text=flt.text,
        )
        return g.list_mappings(
            self._driver, flt, offset=offset, limit=first, database=self.database
        )

    def get(self, uid: str) -> dict[str, Any] | None:
        self._check()
        found = g.get_mappings(self._driver, [uid], database=self.database)
        return found[0] if found else None

    def history(self, uid: str) -> list[dict[str, Any]]:
        self._check()
        return g.history(self._driver, uid, database=self.database)

    # -- suggestions ---------------------------------------------------------------------------

    def suggest(
        self,
        source_system: str,
        target_system: str,
        *,
        workspace: str = "main",
        codes: Sequence[str] | None = None,
        k: int = 10,
        batch_size: int = 32,
        progress: Progress | None = None,
    ) -> SuggestOutcome:
        """Rank candidates for the local codes (all, or ``codes``) and store them; reviewed
        mappings keep their target. Re-running with nothing new changes nothing."""
        self._check()
        if self.suggester is None:
            raise CurationError("no mapping engine is configured in this process")
        started = time.perf_counter()
        source, target = system_url(source_system), system_url(target_system)
        if source == target:
            raise CurationError("source and target system are the same")
        sources = g.source_codes(self._driver, source, codes, database=self.database)
        if codes:
            missing = sorted(set(codes) - {s.code for s in sources})
            if missing:
                raise CurationError(f"unknown codes of {source}: {', '.join(missing[:20])}")
        if not sources:
            raise CurationError(f"no codes of {source} in the graph (import its code list first)")
        changed, empty = 0, []
        done = 0
        for start in range(0, len(sources), batch_size):
            chunk = sources[start : start + batch_size]
            ranked = self.suggester.suggest(chunk, target, k=k)
            rows = []
            for s, candidates in zip(chunk, ranked, strict=True):
                if not candidates:
                    empty.append(s.code)
                frequency = s.properties.get("frequency")
                rows.append(
                    g.SuggestionRow(
                        workspace=workspace,
                        source_uid=s.uid,
                        target_system=target,
                        frequency=frequency if isinstance(frequency, int) else s.facts,
                        candidates=[c.as_dict() for c in candidates],
                        engine=type(self.suggester).__name__,
                    )
                )
            changed += g.store_suggestions(
                self._driver, rows, by=self.reviewer, database=self.database
            )
            done += len(chunk)
            if progress:
                progress(done, len(sources))
        return SuggestOutcome(len(sources), changed, time.perf_counter() - started, empty)

    # -- curation ------------------------------------------------------------------------------

    def update(
        self,
        uid: str,
        *,
        status: str | None = None,
        equivalence: str | None = None,
        target_code: str | None = None,
        comment: str | None = None,
    ) -> dict[str, Any]:
        """Review one mapping: any of status, equivalence, target (a code of its target
        system: a candidate or any other), comment. Every change is in its history."""
        self._check()
        current = self.get(uid)
        if current is None:
            raise CurationError(f"no mapping {uid!r}")
        fields = self._fields(current, status, equivalence, target_code, comment)
        if not fields:
            return current
        return g.update_mappings(
            self._driver, [g.MappingUpdate(uid, fields)], by=self.reviewer, database=self.database
        )[0]

    def bulk(
        self,
        uids: Sequence[str],
        *,
        status: str | None = None,
        equivalence: str | None = None,
        comment: str | None = None,
        accept_top: bool = False,
    ) -> list[dict[str, Any]]:
        """The same change to many mappings (one transaction, one history entry each).
        ``accept_top`` puts each mapping's best candidate back as its target first."""
        self._check()
        if not uids:
            return []
        if len(uids) > MAX_PAGE * 10:
            raise CurationError(f"at most {MAX_PAGE * 10} mappings per bulk action")
        current = {m["uid"]: m for m in g.get_mappings(self._driver, uids, database=self.database)}
        missing = [u for u in uids if u not in current]
        if missing:
            raise CurationError(f"no mapping {missing[0]!r} (and {len(missing) - 1} more)")
        updates = []
        for uid in uids:
            m = current[uid]
            top = _candidates(m)[:1]
            target = top[0]["code"] if accept_top and top else None
            fields = self._fields(m, status, equivalence, target, comment)
            if fields:
                updates.append(g.MappingUpdate(uid, fields, action="bulk"))
        if not updates:
            return list(current.values())
        return g.update_mappings(self._driver, updates, by=self.reviewer, database=self.database)

    def _fields(
        self,
        current: dict[str, Any],
        status: str | None,
        equivalence: str | None,
        target_code: str | None,
        comment: str | None,
    ) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        if target_code is not None and target_code != current.get("targetCode"):
            candidate = next((c for c in _candidates(current) if c["code"] == target_code), None)
            target_uid = f"{current['targetSystem']}|{target_code}"
            if candidate is None and not g.existing_concepts(
                self._driver, [target_uid], database=self.database
            ):
                raise CurationError(f"no code {target_code!r} in {current['targetSystem']}")
            fields |= {
                "targetUid": target_uid,
                "targetCode": target_code,
                "targetDisplay": candidate["display"]
                if candidate
                else g.concept_display(self._driver, target_uid, database=self.database),
                "score": candidate["score"] if candidate else None,
                "method": candidate["method"] if candidate else "manual",
                "rationale": candidate.get("rationale") if candidate else None,
            }
        if equivalence is not None and equivalence != current.get("equivalence"):
            fields["equivalence"] = check_equivalence(equivalence)
        if status is not None and status != current.get("status"):
            fields["status"] = check_status(status)
            if status == "approved" and not (equivalence or current.get("equivalence")):
                fields["equivalence"] = "equivalent"
            if status != "flagged":
                fields["flagReason"] = None
        if comment is not None and comment != current.get("comment"):
            fields["comment"] = comment
        if fields:
            fields["reviewer"] = self.reviewer
            fields["reviewedAt"] = datetime.now(UTC)
        unmatched = fields.get("equivalence", current.get("equivalence")) == "unmatched"
        approved = fields.get("status", current.get("status")) == "approved"
        if approved and not unmatched and not fields.get("targetUid", current.get("targetUid")):
            raise CurationError("approve a mapping with a target, or mark it unmatched")
        return fields

    # -- agreement -----------------------------------------------------------------------------

    def agreement(
        self, source_system: str, target_system: str, workspace_a: str, workspace_b: str
    ) -> AgreementReport:
        """How two workspaces (reviewers mapping the same list independently) agree."""
        self._check()
        if workspace_a == workspace_b:
            raise CurationError("compare two different workspaces")
        decisions = []
        for workspace in (workspace_a, workspace_b):
            rows = self._all(workspace, source_system, target_system)
            decisions.append(
                {
                    m["sourceCode"]: (
                        decision(m.get("status"), m.get("targetCode"), m.get("equivalence")),
                        m.get("sourceDisplay"),
                    )
                    for m in rows
                }
            )
        return agreement(decisions[0], decisions[1])

    def _all(self, workspace: str, source_system: str, target_system: str) -> list[dict[str, Any]]:
        flt = g.MappingFilter(
            workspace=workspace,
            source_system=system_url(source_system),
            target_system=system_url(target_system),
        )
        rows, _ = g.list_mappings(self._driver, flt, limit=100_000, database=self.database)
        return rows

    # -- publishing ----------------------------------------------------------------------------

    def publish(
        self,
        source_system: str,
        target_system: str,
        *,
        workspace: str = "main",
        name: str | None = None,
        title: str | None = None,
    ) -> Published:
        """The workspace's approved mappings as the next version of a ConceptMap; its links
        replace the previous version's, and facts coded with the source codes get the
        standard codes (with the map version, method and confidence)."""
        self._check()
        source, target = system_url(source_system), system_url(target_system)
        approved = [
            m for m in self._all(workspace, source, target) if m.get("status") == "approved"
        ]
        if not approved:
            raise CurationError(f"nothing approved to publish from {source} to {target}")
        name = name or map_name(source, target)
        version = g.next_version(self._driver, name, database=self.database)
        doc = ConceptMapDoc(
            name=name,
            version=version,
            source_system=source,
            target_system=target,
            title=title or f"{source} to {target}",
            publisher="medshadow",
            date=datetime.now(UTC).isoformat(timespec="seconds"),
            elements=tuple(_element(m) for m in sorted(approved, key=lambda m: m["sourceCode"])),
        )
        return self._publish(doc, workspace, [_published(m) for m in approved])

    def _publish(
        self, doc: ConceptMapDoc, workspace: str, elements: list[g.PublishedElement]
    ) -> Published:
        before = g.coded_records(self._driver, doc.name, database=self.database)
        links, coded = g.publish_concept_map(
            self._driver,
            name=doc.name,
            version=doc.version,
            source_system=doc.source_system,
            target_system=doc.target_system,
            workspace=workspace,
            elements=elements,
            document=to_fhir(doc),
            by=self.reviewer,
            database=self.database,
        )
        # records whose facts gained, changed or lost a standard code: the change feed tells
        # their domains' subscribers (previous version's codings count: they may be gone now)
        after = g.coded_records(self._driver, doc.name, database=self.database)
        changed = {
            uid: set(before.get(uid, ())) | set(after.get(uid, ())) for uid in before | after
        }
        publish(
            self._driver,
            changed,
            source=f"conceptmap:{doc.name}|{doc.version}",
            writer=writer_of(self.principal),
            database=self.database,
        )
        return Published(doc.name, doc.version, len(doc.elements), links, coded)

    def concept_maps(self, source_system: str | None = None) -> list[dict[str, Any]]:
        self._check()
        return g.concept_maps(
            self._driver,
            source_system=system_url(source_system) if source_system else None,
            database=self.database,
        )

    def export(self, name: str, version: str | None = None, fmt: ExportFormat = "fhir") -> str:
        """A published version (default: the current one) as FHIR ConceptMap JSON or SSSOM
        TSV."""
        self._check()
        document = g.concept_map_document(self._driver, name, version, database=self.database)
        if document is None:
            raise CurationError(
                f"no concept map {name!r}" + (f" version {version}" if version else "")
            )
        if fmt == "fhir":
            import orjson

            return orjson.dumps(document, option=orjson.OPT_INDENT_2).decode()
        if fmt == "sssom":
            return to_sssom(from_fhir(document, source=f"concept map {name}"))
        raise CurationError(f"unknown export format {fmt!r}: fhir or sssom")

    def import_map(self, doc: ConceptMapDoc, *, workspace: str = "main") -> Published:
        """Take a ConceptMap made elsewhere: its rows become approved mappings of the
        workspace (history action ``import``) and it is published under its name, as the next
        version when that name has versions already. Unknown codes reject the whole map."""
        self._check()
        sources = {e.source_code for e in doc.elements}
        targets = {e.target_code for e in doc.elements if e.target_code}
        known = g.existing_concepts(
            self._driver,
            [f"{doc.source_system}|{c}" for c in sources]
            + [f"{doc.target_system}|{c}" for c in targets],
            database=self.database,
        )
        unknown = sorted(
            [f"{doc.source_system}|{c}" for c in sources if f"{doc.source_system}|{c}" not in known]
            + [
                f"{doc.target_system}|{c}"
                for c in targets
                if f"{doc.target_system}|{c}" not in known
            ]
        )
        if unknown:
            raise ConceptMapError(
                f"concept map {doc.name}",
                [MapProblem(None, f"unknown code {u}") for u in unknown],
            )
        rows = [
            g.SuggestionRow(
                workspace=workspace,
                source_uid=f"{doc.source_system}|{e.source_code}",
                target_system=doc.target_system,
                frequency=None,
                candidates=[
                    {
                        "uid": f"{doc.target_system}|{e.target_code}",
                        "code": e.target_code,
                        "display": e.target_display,
                        "score": e.confidence,
                        "method": e.method or f"import:{doc.name}",
                        "rationale": e.comment,
                    }
                ]
                if e.target_code
                else [],
                engine=f"import:{doc.name}",
            )
            for e in doc.elements
        ]
        g.store_suggestions(self._driver, rows, by=self.reviewer, database=self.database)
        updates = []
        for e, row in zip(doc.elements, rows, strict=True):
            target_uid = f"{doc.target_system}|{e.target_code}" if e.target_code else None
            updates.append(
                g.MappingUpdate(
                    row.uid,
                    {
                        "status": "approved",
                        "equivalence": e.equivalence,
                        "comment": e.comment,
                        "targetUid": target_uid,
                        "targetCode": e.target_code,
                        "targetDisplay": e.target_display,
                        "score": e.confidence,
                        "method": e.method or f"import:{doc.name}",
                        "reviewer": e.reviewer or self.reviewer,
                        "flagReason": None,
                    },
                    action="import",
                    comment=f"imported from concept map {doc.name} version {doc.version}",
                )
            )
        g.update_mappings(self._driver, updates, by=self.reviewer, database=self.database)
        version = g.next_version(self._driver, doc.name, database=self.database)
        if _int(doc.version) >= int(version):  # keep the file's version unless taken
            version = doc.version
        published = ConceptMapDoc(
            name=doc.name,
            version=version,
            source_system=doc.source_system,
            target_system=doc.target_system,
            elements=doc.elements,
            title=doc.title,
            status=doc.status,
            publisher=doc.publisher,
            date=doc.date or datetime.now(UTC).isoformat(timespec="seconds"),
            url=doc.url,
        )
        elements = [
            g.PublishedElement(
                f"{doc.source_system}|{e.source_code}",
                f"{doc.target_system}|{e.target_code}" if e.target_code else None,
                e.equivalence,
                e.method,
                e.confidence,
            )
            for e in doc.elements
        ]
        return self._publish(published, workspace, elements)

    # -- re-review ----------------------------------------------------------------------------

    def rereview(self, system: str, version: str) -> Rereview:
        """After loading ``version`` of a target system: flag every mapping whose target is
        retired or changed in it (with the reason), and give those fresh suggestions."""
        self._check()
        url = system_url(system)
        stale = g.stale_targets(self._driver, f"{url}|{version}", database=self.database)
        if not stale:
            return Rereview(0, 0)
        updates = [
            g.MappingUpdate(
                row["uid"],
                {
                    "status": "flagged",
                    "flagReason": (
                        f"{row['code']} is retired in {url} {row['version']}"
                        if row["status"] == "retired"
                        else f"{row['code']} changed in {url} {row['version']}: "
                        f"{row.get('previous')!r} → {row.get('display')!r}"
                    ),
                },
                action="flag",
            )
            for row in stale
        ]
        g.update_mappings(self._driver, updates, by=self.reviewer, database=self.database)
        resuggested = 0
        if self.suggester is not None:
            mappings = g.get_mappings(
                self._driver, [u.uid for u in updates], database=self.database
            )
            by_source: dict[tuple[str, str, str], list[str]] = {}
            for m in mappings:
                by_source.setdefault(
                    (m["workspace"], m["sourceSystem"], m["targetSystem"]), []
                ).append(m["sourceCode"])
            for (workspace, source, target), codes in by_source.items():
                outcome = self.suggest(source, target, workspace=workspace, codes=codes)
                resuggested += outcome.codes
        return Rereview(len(stale), resuggested)


def _candidates(mapping: dict[str, Any]) -> list[dict[str, Any]]:
    import orjson

    raw = mapping.get("candidates")
    return list(orjson.loads(raw)) if raw else []


def _element(m: dict[str, Any]) -> MapElement:
    unmatched = m.get("equivalence") == "unmatched"
    reviewed: Any = m.get("reviewedAt")
    return MapElement(
        source_code=m["sourceCode"],
        source_display=m.get("sourceDisplay"),
        target_code=None if unmatched else m.get("targetCode"),
        target_display=None if unmatched else m.get("targetDisplay"),
        equivalence=m.get("equivalence") or "equivalent",
        comment=m.get("comment"),
        method=m.get("method"),
        confidence=m.get("score"),
        reviewer=m.get("reviewer"),
        reviewed_at=reviewed.isoformat() if reviewed is not None else None,
    )


def _published(m: dict[str, Any]) -> g.PublishedElement:
    unmatched = m.get("equivalence") == "unmatched"
    return g.PublishedElement(
        m["sourceUid"],
        None if unmatched else m.get("targetUid"),
        m.get("equivalence") or "equivalent",
        m.get("method"),
        m.get("score"),
    )


def _int(version: str) -> int:
    return int(version) if version.isdigit() else 0
