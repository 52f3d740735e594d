"""Identity resolution on the graph: link domain records into persons, incrementally.

:class:`MasterIndex` joins the graph-agnostic engine of ``identity/`` (splink model, blocking
keys, deterministic national-id rule, thresholds, clustering) with the Cypher of
``graph/mpi.py``:

* :meth:`MasterIndex.link_pending` — every Patient record without a Person (a load just wrote
  it) is scored against the *linked records that share a blocking key with it* and against the
  other pending records; no retraining, no re-scoring of the population. Pairs at or above the
  automatic threshold join records into one Person (a record bridging two persons merges
  them, logged); the band below goes to the review queue; a pair a steward rejected never
  links automatically again.
* :meth:`confirm`, :meth:`reject`, :meth:`unlink` — the data steward's decisions, each logged
  with who and when. Consents follow identity: a merge moves them to the surviving person, an
  unlink copies the person's active restrictions (not its grants) to the new one.
* :meth:`match` — ``Patient/$match``: scored candidate persons for a set of demographics.

The model comes from the graph (``LinkageModel``), else the packaged one trained on a
perturbed synthetic population (``mpi/default_model.json``), and can be retrained on the
graph's own records with :meth:`train`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from graph import mpi as g
from graph.connection import Driver
from graph.consent import Writer
from graph.registry import IDENTITY_LINKER, publish
from identity.linkage import (
    DEFAULT_AUTO_THRESHOLD,
    DEFAULT_REVIEW_THRESHOLD,
    Linker,
    ScoredPair,
    TrainedModel,
    blocking_keys,
    classify,
    match_demographics,
    match_new,
)
from identity.model import DemographicRecord

DEFAULT_MODEL_PATH = Path(__file__).with_name("default_model.json")
QUERY_RECORD_ID = "$match/query"
#: Change-feed kind of an identity change: a record now belongs to another person.
LINK_KIND = "Link"

log = logging.getLogger(__name__)

#: Where the golden record's values come from first: clinic records beat self-entered ones.
_KIND_RANK = {"MIS": 0, "RESEARCH_BANK": 1, "PORTAL": 2, "IOT_CLOUD": 3, "SOCIAL_CHANNEL": 4}


class MatchError(ValueError):
    """A steward decision or a match request that cannot be carried out (message is safe)."""


@dataclass(slots=True)
class LinkReport:
    pending: int = 0
    existing_compared: int = 0
    pairs_scored: int = 0
    linked_to_existing: int = 0
    new_persons: int = 0
    persons_merged: int = 0
    review_opened: int = 0
    blocked_by_rejection: int = 0
    seconds: float = 0.0
    #: Persons whose records changed: the change feed's input.
    persons: set[str] = field(default_factory=set)
    #: Pending record uid -> the person it now belongs to.
    assigned: dict[str, str] = field(default_factory=dict)

    @property
    def records_per_second(self) -> float:
        return self.pending / self.seconds if self.seconds else 0.0


@dataclass(frozen=True, slots=True)
class Candidate:
    """One answer of :meth:`MasterIndex.match`: a person and the best record that matched."""

    person: str
    record: str
    domain: str
    probability: float
    weight: float
    grade: str  # certain | probable | possible (FHIR match-grade)
    evidence: dict[str, str]


def record_from_props(props: Mapping[str, Any]) -> DemographicRecord:
    """A graph Patient record's demographic properties as the engine's input."""
    given = props.get("given")
    if isinstance(given, list):
        given = given[0] if given else None
    birth = props.get("birthDate")
    if birth is not None and not isinstance(birth, date):
        birth = birth.to_native() if hasattr(birth, "to_native") else date.fromisoformat(str(birth))
    return DemographicRecord(
        record_id=str(props["uid"]),
        domain=str(props.get("domain") or ""),
        family=props.get("family"),
        given=given,
        birth_date=birth,
        gender=props.get("gender"),
        national_id=props.get("nationalId"),
        postal_code=props.get("postalCode"),
        city=props.get("city"),
        address_line=props.get("addressLine"),
        phone=props.get("phone"),
        other_family=tuple(props.get("otherFamily") or ()),
    )


def person_uid(seed: str) -> str:
    """A stable, opaque person id."""
    return "person:" + hashlib.sha256(seed.encode()).hexdigest()[:16]


def candidate_uid(left: str, right: str) -> str:
    a, b = sorted((left, right))
    return "match:" + hashlib.sha256(f"{a}\x1f{b}".encode()).hexdigest()[:20]


class _Groups:
    """Union-find over record ids that refuses a union joining a rejected pair."""

    def __init__(self, rejected: set[tuple[str, str]]) -> None:
        self.parent: dict[str, str] = {}
        self.members: dict[str, set[str]] = {}
        self.rejected = rejected

    def find(self, x: str) -> str:
        if x not in self.parent:
            self.parent[x] = x
            self.members[x] = {x}
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: str, b: str) -> bool:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return True
        small, big = sorted((self.members[ra], self.members[rb]), key=len)
        if self.rejected and any(
            (min(x, y), max(x, y)) in self.rejected for x in small for y in big
        ):
            return False
        keep, drop = (ra, rb) if ra < rb else (rb, ra)
        self.parent[drop] = keep
        self.members[keep] |= self.members.pop(drop)
        return True


class MasterIndex:
    """Thresholds: explicit ones are used and stored with the model, so every other user of
    the index (the API's ``$match`` grades, a steward's queue) works with the thresholds the
    links were made with; without them, the stored ones, else the engine's defaults."""

    def __init__(
        self,
        driver: Driver,
        *,
        database: str | None = None,
        auto_threshold: float | None = None,
        review_threshold: float | None = None,
        model: TrainedModel | None = None,
        writer: Writer | None = IDENTITY_LINKER,
    ) -> None:
        self.driver = driver
        self.database = database
        self.writer = writer  # audited as the author of links, merges and unlinks
        self._explicit = (auto_threshold, review_threshold)
        self.auto_threshold = (
            auto_threshold if auto_threshold is not None else DEFAULT_AUTO_THRESHOLD
        )
        self.review_threshold = (
            review_threshold if review_threshold is not None else DEFAULT_REVIEW_THRESHOLD
        )
        self._model = model
        self._loaded = False

    # -- model ------------------------------------------------------------------------------

    @property
    def model(self) -> TrainedModel:
        """The graph's current model; the packaged one (stored on first use) otherwise."""
        if not self._loaded:
            self._load()
        assert self._model is not None
        return self._model

    def _load(self) -> None:
        stored = g.load_model(self.driver, database=self.database)
        if stored is None:
            text = DEFAULT_MODEL_PATH.read_text()
            packaged = TrainedModel.from_json(text)
            g.store_model_json(
                self.driver,
                text,
                records=int(packaged.training.get("records", 0)),
                source="packaged",
                now=_now(),
                database=self.database,
            )
            stored = (text, None, None)
        text, auto, review = stored
        if self._model is None:
            self._model = TrainedModel.from_json(text)
        explicit_auto, explicit_review = self._explicit
        if explicit_auto is None and auto is not None:
            self.auto_threshold = float(auto)
        if explicit_review is None and review is not None:
            self.review_threshold = float(review)
        if explicit_auto is not None or explicit_review is not None:
            g.store_thresholds(
                self.driver, self.auto_threshold, self.review_threshold, database=self.database
            )
        self._loaded = True

    def thresholds(self) -> tuple[float, float]:
        if not self._loaded:
            self._load()
        return self.auto_threshold, self.review_threshold

    def train(self, *, seed: int = 42) -> TrainedModel:
        """Retrain on every Patient record in the graph and make it the current model.

        Raises:
            ValueError: too few records or duplicates to learn from (keep the old model).
        """
        records = [record_from_props(r) for r in g.all_records(self.driver, database=self.database)]
        model = Linker.train(records, seed=seed)
        g.store_model_json(
            self.driver,
            model.to_json(),
            records=len(records),
            source="graph",
            now=_now(),
            database=self.database,
        )
        self._model = model
        self._loaded = False  # thresholds are re-read (or re-stored) with the new model
        self._load()
        return model

    # -- linking ----------------------------------------------------------------------------

    def link_pending(self, progress: Callable[[str], None] | None = None) -> LinkReport:
        """Link every record without a person; see the module docstring."""
        started = time.perf_counter()
        report = LinkReport()
        pending = [
            record_from_props(r) for r in g.pending_records(self.driver, database=self.database)
        ]
        report.pending = len(pending)
        if not pending:
            return report
        if progress:
            progress(f"matching {len(pending)} new records")
        keys = {r.record_id: sorted(blocking_keys(r)) for r in pending}
        g.set_match_keys(
            self.driver, [{"uid": k, "keys": v} for k, v in keys.items()], database=self.database
        )
        existing_rows = g.linked_records_sharing(
            self.driver, {k for ks in keys.values() for k in ks}, database=self.database
        )
        report.existing_compared = len(existing_rows)
        person_of = {str(r["uid"]): str(r["person"]) for r in existing_rows}
        existing = [record_from_props(r) for r in existing_rows]

        model = self.model  # also settles the thresholds
        pairs = match_new(model, existing, pending)
        report.pairs_scored = len(pairs)
        decisions = classify(
            pairs, auto_threshold=self.auto_threshold, review_threshold=self.review_threshold
        )
        involved = {r.record_id for r in pending} | set(person_of)
        rejected = g.rejected_pairs(self.driver, involved, database=self.database)

        groups = _Groups(rejected)
        for record, person in person_of.items():  # records of one person start together
            groups.union(record, "@" + person)
        best: dict[str, ScoredPair] = {}
        for pair in decisions.auto_links:  # best first
            if not groups.union(pair.left, pair.right):
                report.blocked_by_rejection += 1
                continue
            for side in (pair.left, pair.right):
                if side not in person_of and side not in best:
                    best[side] = pair
        for r in pending:
            groups.find(r.record_id)

        now = _now()
        links: list[dict[str, Any]] = []
        merged_away: set[str] = set()
        moves: list[tuple[str, str, list[str]]] = []  # (from person, to person, records)
        pending_ids = {r.record_id for r in pending}
        clusters = [
            (sorted(m[1:] for m in members if m.startswith("@")), sorted(members & pending_ids))
            for members in groups.members.values()
        ]
        # a new record bridging persons merges them: all their records move, not only those
        # this run compared
        bridged = sorted(
            {p for persons, new in clusters if new and len(persons) > 1 for p in persons}
        )
        records_of_person = {
            uid: [str(r["uid"]) for r in recs]
            for uid, recs in g.records_of_persons(
                self.driver, bridged, database=self.database
            ).items()
        }
        for persons, new_records in clusters:
            if not new_records:
                continue
            if persons:
                # the person holding most records stays; others merge into it
                target = max(persons, key=lambda p: (len(records_of_person.get(p, ())), p))
                report.linked_to_existing += len(new_records)
                for other in persons:
                    if other != target:
                        merged_away.add(other)
                        moves.append((other, target, sorted(records_of_person.get(other, []))))
            else:
                target = person_uid(new_records[0])
                report.new_persons += 1
            for record in new_records:
                links.append(
                    {
                        "record": record,
                        "person": target,
                        "props": _link_props(best.get(record), now),
                    }
                )
                report.assigned[record] = target
            report.persons.add(target)
        for _source, target, records in moves:
            for record in records:
                links.append(
                    {
                        "record": record,
                        "person": target,
                        "props": {"method": "merge", "linkedAt": now, "linkedBy": "mpi"},
                    }
                )
        g.link_records(self.driver, links, now=now, database=self.database)
        for source, target, records in moves:
            g.log_decision(
                self.driver,
                _decision("merge", "mpi", now, None, source, target),
                records,
                database=self.database,
            )
        report.persons_merged = g.delete_empty_persons(
            self.driver,
            merged_away,
            into={str(s): str(t) for s, t, _ in moves},
            database=self.database,
        )
        self.refresh_persons(report.persons)
        self._announce([r for _s, _t, records in moves for r in records], "mpi:merge")

        # possible matches across persons go to the steward; same-person pairs need nothing
        final = {**person_of, **report.assigned}
        for _source, target, records in moves:
            for record in records:
                final[record] = target
        # One question per pair of persons, asked once: the best record pair stands for it
        # (twins with a dozen records each would otherwise fill the queue with 100+ items).
        best_per_persons: dict[tuple[str, str], ScoredPair] = {}
        for pair in decisions.review:  # best first
            a, b = final.get(pair.left), final.get(pair.right)
            if a is None or b is None or a == b or (pair.left, pair.right) in rejected:
                continue
            best_per_persons.setdefault((min(a, b), max(a, b)), pair)
        asked = g.open_candidate_person_pairs(
            self.driver, {p for key in best_per_persons for p in key}, database=self.database
        )
        review_rows = [
            _candidate_row(pair) for key, pair in best_per_persons.items() if key not in asked
        ]
        g.upsert_candidates(self.driver, review_rows, now=now, database=self.database)
        report.review_opened = len(review_rows)
        g.close_resolved_candidates(self.driver, now=now, database=self.database)
        report.seconds = time.perf_counter() - started
        return report

    def refresh_persons(self, uids: Iterable[str]) -> None:
        """Recompute persons' golden demographics from their records (clinics first)."""
        uids = sorted(set(uids))
        rows = []
        for i in range(0, len(uids), 2000):
            chunk = uids[i : i + 2000]
            for uid, records in g.records_of_persons(
                self.driver, chunk, database=self.database
            ).items():
                rows.append({"uid": uid, "props": golden_record(records)})
        g.set_persons(self.driver, rows, database=self.database)

    # -- the steward's decisions ------------------------------------------------------------

    def confirm(self, candidate: str, *, by: str, comment: str | None = None) -> str:
        """Join the two records' persons; returns the surviving person id."""
        item = self._open_candidate(candidate)
        recs = {r["uid"]: r for r in g.records_by_uid(self.driver, [item["left"], item["right"]])}
        a, b = recs[item["left"]].get("person"), recs[item["right"]].get("person")
        now = _now()
        target, source = str(a), b
        if source is not None and source != target:
            sizes = g.records_of_persons(self.driver, [target, source], database=self.database)
            if len(sizes.get(source, ())) > len(sizes.get(target, ())):
                target, source = source, target
            moving = [r["uid"] for r in sizes.get(str(source), [])]
            props = {"method": "steward", "linkedAt": now, "linkedBy": by, "candidate": candidate}
            g.link_records(
                self.driver,
                [{"record": r, "person": target, "props": props} for r in moving],
                now=now,
                database=self.database,
            )
            g.delete_empty_persons(
                self.driver, [str(source)], into={str(source): target}, database=self.database
            )
            self.refresh_persons([target])
            self._announce(moving, "mpi:confirm")
        g.log_decision(
            self.driver,
            _decision("confirm", by, now, comment, source, target),
            [item["left"], item["right"]],
            candidates=[candidate],
            status="confirmed",
            database=self.database,
        )
        return target

    def reject(self, candidate: str, *, by: str, comment: str | None = None) -> None:
        """Keep the two records apart, now and in every later linking run."""
        item = self._open_candidate(candidate)
        g.log_decision(
            self.driver,
            _decision("reject", by, _now(), comment, None, None),
            [item["left"], item["right"]],
            candidates=[candidate],
            status="rejected",
            database=self.database,
        )

    def unlink(self, record: str, *, by: str, comment: str | None = None) -> str:
        """Take a record out of its person into a person of its own; returns the new id.

        The record's pairs with the old person's other records are marked rejected, so no
        later linking run puts it back.
        """
        found = g.records_by_uid(self.driver, [record], database=self.database)
        if not found:
            raise MatchError(f"no patient record {record!r}")
        old = found[0].get("person")
        holders = g.records_of_persons(self.driver, [str(old)], database=self.database)
        others = [r["uid"] for r in holders.get(str(old), []) if r["uid"] != record]
        if old is None or not others:
            raise MatchError(f"record {record!r} is not linked with any other record")
        now = _now()
        decision = _decision("unlink", by, now, comment, old, None)
        new = person_uid(f"{record}#{decision['decision']}")
        decision["toPerson"] = new
        props = {"method": "steward", "linkedAt": now, "linkedBy": by}
        g.link_records(
            self.driver,
            [{"record": record, "person": new, "props": props}],
            now=now,
            database=self.database,
        )
        copied = g.copy_restrictions(
            self.driver, str(old), new, by=f"mpi:unlink:{by}", now=now, database=self.database
        )
        if copied:
            log.info("unlink %s: %d restriction(s) of %s copied to %s", record, copied, old, new)
        rows = [
            {
                "uid": candidate_uid(record, other),
                "left": min(record, other),
                "right": max(record, other),
                "probability": None,
                "weight": None,
                "evidence": json.dumps({"unlinked": decision["decision"]}),
            }
            for other in others
        ]
        g.upsert_candidates(self.driver, rows, now=now, database=self.database)
        g.log_decision(
            self.driver,
            decision,
            [record],
            candidates=[row["uid"] for row in rows],
            status="rejected",
            database=self.database,
        )
        self.refresh_persons([str(old), new])
        self._announce([record, others[0]], "mpi:unlink")
        return new

    def _announce(self, records: Sequence[str], source: str) -> None:
        """Tell the change feed that these records now belong to another person."""
        if records:
            publish(
                self.driver,
                {r: {LINK_KIND} for r in records},
                source=source,
                writer=self.writer,
                database=self.database,
            )

    def _open_candidate(self, uid: str) -> dict[str, Any]:
        item = g.candidate(self.driver, uid, database=self.database)
        if item is None:
            raise MatchError(f"no match candidate {uid!r}")
        if item.get("status") != "open":
            raise MatchError(f"match candidate {uid!r} is already {item.get('status')}")
        return item

    # -- $match -----------------------------------------------------------------------------

    def match(self, query: DemographicRecord, *, limit: int = 10) -> list[Candidate]:
        """Scored candidate persons for ``query``'s demographics, best first (one per person)."""
        if limit < 1 or limit > 100:
            raise MatchError("limit must be between 1 and 100")
        query = _as_query(query)
        existing_rows = g.linked_records_sharing(
            self.driver, blocking_keys(query), database=self.database
        )
        if not existing_rows:
            return []
        rows = {str(r["uid"]): r for r in existing_rows}
        pairs = match_demographics(
            self.model, [record_from_props(r) for r in existing_rows], query, limit=len(rows)
        )
        out: list[Candidate] = []
        seen: set[str] = set()
        for pair in pairs:
            other = pair.right if pair.left == QUERY_RECORD_ID else pair.left
            row = rows[other]
            if row["person"] in seen:
                continue
            seen.add(str(row["person"]))
            out.append(
                Candidate(
                    person=str(row["person"]),
                    record=other,
                    domain=str(row.get("domain") or ""),
                    probability=pair.match_probability,
                    weight=pair.match_weight,
                    grade=self._grade(pair),
                    evidence=dict(pair.evidence),
                )
            )
            if len(out) == limit:
                break
        return out

    def _grade(self, pair: ScoredPair) -> str:
        if pair.match_probability >= self.auto_threshold and "guard" not in pair.evidence:
            return "certain"
        if pair.match_probability >= self.review_threshold:
            return "probable"
        return "possible"


def golden_record(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The person's demographics: per field the most common value, clinic records first."""
    ordered = sorted(records, key=lambda r: (_KIND_RANK.get(str(r.get("kind")), 9), str(r["uid"])))
    out: dict[str, Any] = {}
    for key in ("name", "family", "gender", "birthDate", "nationalId"):
        values = [r.get(key) for r in ordered if r.get(key) not in (None, "")]
        out[key] = _most_common(values)
    givens = [tuple(r["given"]) for r in ordered if r.get("given")]
    best_given = _most_common(givens)
    out["given"] = list(best_given) if best_given else None
    out["records"] = len(records)
    return out


def _most_common(values: Sequence[Any]) -> Any:
    if not values:
        return None
    counts = Counter(values)
    top = max(counts.values())
    return next(v for v in values if counts[v] == top)  # ties: the highest-ranked source


def _as_query(record: DemographicRecord) -> DemographicRecord:
    return DemographicRecord(
        record_id=QUERY_RECORD_ID,
        domain="$match",
        family=record.family,
        given=record.given,
        birth_date=record.birth_date,
        gender=record.gender,
        national_id=record.national_id,
        postal_code=record.postal_code,
        city=record.city,
        address_line=record.address_line,
        phone=record.phone,
        other_family=record.other_family,
    )


def _link_props(pair: ScoredPair | None, now: datetime) -> dict[str, Any]:
    if pair is None:
        return {"method": "singleton", "linkedAt": now, "linkedBy": "mpi"}
    return {
        "method": "rule" if "rule" in pair.evidence else "probabilistic",
        "probability": pair.match_probability,
        "weight": pair.match_weight,
        "evidence": json.dumps(pair.evidence, sort_keys=True),
        "matchedWith": f"{pair.left} ~ {pair.right}",
        "linkedAt": now,
        "linkedBy": "mpi",
    }


def _candidate_row(pair: ScoredPair) -> dict[str, Any]:
    return {
        "uid": candidate_uid(pair.left, pair.right),
        "left": pair.left,
        "right": pair.right,
        "probability": pair.match_probability,
        "weight": pair.match_weight,
        "evidence": json.dumps(pair.evidence, sort_keys=True),
    }


def _decision(
    action: str,
    by: str,
    now: datetime,
    comment: str | None,
    source: str | None,
    target: str | None,
) -> dict[str, Any]:
    return {
        "decision": f"decision:{uuid.uuid4().hex}",
        "action": action,
        "by": by,
        "now": now,
        "comment": comment,
        "fromPerson": source,
        "toPerson": target,
    }


def _now() -> datetime:
    return datetime.now(UTC)
