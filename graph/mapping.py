"""The mapping workbench in the graph: what the engine reads, mappings and their history, concept
maps and their use by facts.

Model (labels and types from the ontology):

* ``(:Mapping)`` per (workspace, local concept, target system), uid
  ``workspace|source uid|target system``: the ranked ``candidates`` (JSON), the chosen target
  (``targetUid``/``targetCode``/``targetDisplay`` and ``-[:TARGET_CONCEPT]->``), ``score``,
  ``method``, ``status`` (unreviewed, approved, rejected, flagged), ``equivalence``,
  ``comment``, ``reviewer``, timestamps, ``flagReason``; ``-[:SOURCE_CONCEPT]->`` the local code.
* ``(:MappingChange)-[:REVISES]->(:Mapping)``: one per change (suggested, reviewed, flagged,
  imported) with who, when and the changed fields before/after. Append-only.
* ``(:ConceptMap {uid: name|version})``: a published version with its FHIR JSON document;
  its elements are ``(local)-[:MAPS_TO {map, mapVersion, equivalence, method, confidence}]->
  (standard)``. Only the current version's links exist.
* Facts coded with a mapped local code get ``(fact)-[:CODED_AS {map, mapVersion, method,
  confidence, equivalence}]->(standard)`` next to their original coding, so every query that
  follows ``CODED_AS`` sees the standard code, with its provenance.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import neo4j
import orjson

from graph.connection import run_read
from graph.writer import system_key
from ontology.model import FACT_LABELS, Label, RelType

CONCEPT, MAPPING, CHANGE, CMAP = (
    Label.CONCEPT.value,
    Label.MAPPING.value,
    Label.MAPPING_CHANGE.value,
    Label.CONCEPT_MAP.value,
)
CODED_AS, MAPS_TO, IN_VERSION = (
    RelType.CODED_AS.value,
    RelType.MAPS_TO.value,
    RelType.IN_VERSION.value,
)
SOURCE_CONCEPT, TARGET_CONCEPT, REVISES = (
    RelType.SOURCE_CONCEPT.value,
    RelType.TARGET_CONCEPT.value,
    RelType.REVISES.value,
)
_FACTS = "|".join(sorted(label.value for label in FACT_LABELS))

STATUSES = ("unreviewed", "approved", "rejected", "flagged")
#: Equivalences under which a fact coded with the source code may also carry the target code:
#: the target means the same or is broader ("wider"). Narrower / inexact targets would claim more
#: than the clinic recorded.
APPLICABLE = ("equal", "equivalent", "wider")


def mapping_uid(workspace: str, source_uid: str, target_system: str) -> str:
    return f"{workspace}|{source_uid}|{target_system}"


# -- what the engine reads -------------------------------------------------------------------

#: Local codes of a system with their list properties and the data seen with them: fact kinds,
#: how many facts, numeric value quantiles and units (only facts coded directly, not by a map).
SOURCE_CODES = f"""
MATCH (c:{CONCEPT} {{system: $system}})
WHERE $codes IS NULL OR c.code IN $codes
CALL (c) {{
  OPTIONAL MATCH (f:{_FACTS})-[r:{CODED_AS}]->(c) WHERE r.map IS NULL
  WITH collect(f) AS facts
  WITH facts, [f IN facts WHERE f.value IS NOT NULL | f.value] AS values
  RETURN size(facts) AS facts,
         apoc.coll.toSet([f IN facts | head(labels(f))]) AS kinds,
         apoc.coll.toSet([f IN facts WHERE f.unit IS NOT NULL | f.unit])[..5] AS units,
         size(values) AS nValues,
         CASE WHEN size(values) = 0 THEN null ELSE apoc.coll.sort(values) END AS sortedValues
}}
RETURN c.uid AS uid, c.system AS system, c.code AS code, c.display AS display,
       c.designationValues AS designations, c.properties AS properties,
       facts, kinds, units, nValues, sortedValues
ORDER BY c.code
"""

#: What the re-ranker knows of candidate concepts: names, properties, how the ecosystem's data
#: uses them (facts coded directly, their kinds, value quantiles and units).
TARGET_PROFILES = f"""
UNWIND $uids AS uid
MATCH (c:{CONCEPT} {{uid: uid}})
CALL (c) {{
  OPTIONAL MATCH (f:{_FACTS})-[r:{CODED_AS}]->(c) WHERE r.map IS NULL
  WITH f LIMIT $sample
  WITH collect(f) AS facts
  WITH facts, [f IN facts WHERE f.value IS NOT NULL | f.value] AS values
  RETURN size(facts) AS facts,
         apoc.coll.toSet([f IN facts | head(labels(f))]) AS kinds,
         apoc.coll.toSet([f IN facts WHERE f.unit IS NOT NULL | f.unit])[..5] AS units,
         CASE WHEN size(values) = 0 THEN null ELSE apoc.coll.sort(values) END AS sortedValues
}}
RETURN c.uid AS uid, c.system AS system, c.code AS code, c.display AS display,
       c.designationValues AS designations, c.properties AS properties,
       facts, kinds, units, sortedValues, c.retiredIn AS retiredIn,
       [(c)-[:{RelType.IS_A.value}]->(p:{CONCEPT}) | p.uid] AS parents
"""

#: Full-text candidates for many query texts at once, restricted to the target system.
LEXICAL = """
UNWIND $queries AS q
CALL (q) {
  CALL db.index.fulltext.queryNodes('concept_lexicon', q.lucene, {limit: $k})
  YIELD node AS c, score
  WHERE c.system = $system
  RETURN c, score
}
RETURN q.i AS i, c.uid AS uid, score
"""


#: Value quantiles of every concept of a system per unit the ecosystem records it in: the
#: engine's "data" candidates for a lab whose name says nothing (a foreign or cryptic one).
VALUE_PROFILES = f"""
MATCH (f:{Label.OBSERVATION.value})-[r:{CODED_AS}]->(c:{CONCEPT} {{system: $system}})
WHERE r.map IS NULL AND f.unit IN $units AND f.value IS NOT NULL
WITH c.uid AS uid, f.unit AS unit, f.value AS v
RETURN uid, unit, count(*) AS n, percentileCont(v, 0.1) AS p10, percentileCont(v, 0.5) AS median,
       percentileCont(v, 0.9) AS p90
"""


@dataclass(frozen=True, slots=True)
class ValueStats:
    """Quantiles of the numeric values recorded with a code."""

    n: int
    p10: float
    median: float
    p90: float


@dataclass(frozen=True, slots=True)
class CodeProfile:
    """A concept with the data the ecosystem recorded with it."""

    uid: str
    system: str
    code: str
    display: str | None
    designations: tuple[str, ...]
    properties: dict[str, Any]
    facts: int
    kinds: tuple[str, ...]
    units: tuple[str, ...]
    values: ValueStats | None
    #: The code system version that retired the concept (never proposed as a target).
    retired_in: str | None = None
    #: Direct parents (IS_A) in a hierarchical system.
    parents: tuple[str, ...] = ()


def _quantile(sorted_values: Sequence[float], q: float) -> float:
    if len(sorted_values) == 1:
        return float(sorted_values[0])
    pos = q * (len(sorted_values) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return float(sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo))


def _profile(r: Mapping[str, Any]) -> CodeProfile:
    values = r.get("sortedValues")
    stats = (
        ValueStats(
            len(values), _quantile(values, 0.1), _quantile(values, 0.5), _quantile(values, 0.9)
        )
        if values
        else None
    )
    props = orjson.loads(r["properties"]) if r.get("properties") else {}
    return CodeProfile(
        uid=r["uid"],
        system=r["system"],
        code=r["code"],
        display=r.get("display"),
        designations=tuple(r.get("designations") or ()),
        properties=props,
        facts=int(r.get("facts") or 0),
        kinds=tuple(sorted(k for k in r.get("kinds") or () if k)),
        units=tuple(r.get("units") or ()),
        values=stats,
        retired_in=r.get("retiredIn"),
        parents=tuple(r.get("parents") or ()),
    )


def source_codes(
    driver: neo4j.Driver,
    system: str,
    codes: Sequence[str] | None = None,
    *,
    database: str | None = None,
) -> list[CodeProfile]:
    rows = run_read(
        driver, SOURCE_CODES, {"system": system, "codes": list(codes) if codes else None}, database
    )
    return [_profile(r) for r in rows]


def target_profiles(
    driver: neo4j.Driver,
    uids: Iterable[str],
    *,
    sample: int = 2000,
    database: str | None = None,
) -> dict[str, CodeProfile]:
    """Profiles of these concepts (value statistics from up to ``sample`` facts each)."""
    wanted = sorted(set(uids))
    if not wanted:
        return {}
    rows = run_read(driver, TARGET_PROFILES, {"uids": wanted, "sample": sample}, database)
    return {r["uid"]: _profile(r) for r in rows}


def value_profiles(
    driver: neo4j.Driver, system: str, units: Sequence[str], *, database: str | None = None
) -> dict[str, dict[str, ValueStats]]:
    """unit → concept uid → value quantiles, for the concepts of ``system``."""
    out: dict[str, dict[str, ValueStats]] = {}
    if not units:
        return out
    for r in run_read(driver, VALUE_PROFILES, {"system": system, "units": list(units)}, database):
        out.setdefault(r["unit"], {})[r["uid"]] = ValueStats(
            int(r["n"]), float(r["p10"]), float(r["median"]), float(r["p90"])
        )
    return out


#: Concepts of a system written outside the batch writer (device readings, portal entries) or
#: before ``systemKey`` existed get it: the lexicon index finds them by it.
FILL_SYSTEM_KEYS = f"""
MATCH (c:{CONCEPT} {{system: $system}}) WHERE c.systemKey IS NULL
SET c.systemKey = $key
RETURN count(c) AS n
"""


def ensure_system_keys(driver: neo4j.Driver, system: str, *, database: str | None = None) -> int:
    """Give the system's concepts their ``systemKey`` (by the system index; a no-op when all
    have it). Called once per suggestion run, where the key is needed, not at start-up."""
    records, _, _ = driver.execute_query(
        FILL_SYSTEM_KEYS, {"system": system, "key": system_key(system)}, database_=database
    )
    return int(records[0]["n"]) if records else 0


def lexical_candidates(
    driver: neo4j.Driver,
    queries: Sequence[str],
    system: str,
    *,
    k: int = 30,
    database: str | None = None,
) -> list[list[tuple[str, float]]]:
    """Per Lucene query (empty → no candidates): ``(uid, score)`` of up to ``k`` concepts of
    ``system``, best first (the system is a term of the query: ``concept_lexicon``)."""
    key = f"systemKey:{system_key(system)}"
    params = [{"i": i, "lucene": f"{key} AND ({q})"} for i, q in enumerate(queries) if q]
    out: list[list[tuple[str, float]]] = [[] for _ in queries]
    if not params:
        return out
    rows = run_read(driver, LEXICAL, {"queries": params, "system": system, "k": k}, database)
    for r in rows:
        out[r["i"]].append((r["uid"], float(r["score"])))
    for hits in out:
        hits.sort(key=lambda h: -h[1])
    return out


# -- mappings: suggestions, curation, history --------------------------------------------------

_MAPPING_FIELDS = (
    "status",
    "equivalence",
    "comment",
    "targetUid",
    "targetCode",
    "targetDisplay",
    "score",
    "method",
    "rationale",
    "reviewer",
    "flagReason",
)

#: Store fresh suggestions. A mapping nobody has reviewed takes the new top candidate as its
#: target; a reviewed or flagged one keeps its target (the terminologist decides).
UPSERT_SUGGESTIONS = f"""
UNWIND $rows AS row
MATCH (s:{CONCEPT} {{uid: row.sourceUid}})
MERGE (m:{MAPPING} {{uid: row.uid}})
ON CREATE SET m.workspace = row.workspace, m.sourceUid = row.sourceUid,
              m.sourceSystem = s.system, m.sourceCode = s.code, m.targetSystem = row.targetSystem,
              m.status = 'unreviewed', m.createdAt = $now
MERGE (m)-[:{SOURCE_CONCEPT}]->(s)
WITH m, s, row, coalesce(m.candidates = row.candidates, false) AS same
SET m.sourceDisplay = s.display, m.sourceFrequency = row.frequency
WITH m, row, same WHERE NOT same
WITH m, row, m {{ {", ".join("." + f for f in _MAPPING_FIELDS)} }} AS before
SET m.candidates = row.candidates, m.suggestedAt = $now, m.engine = row.engine,
    m.updatedAt = $now
FOREACH (_ IN CASE WHEN m.status = 'unreviewed' THEN [1] ELSE [] END |
  SET m.targetUid = row.top.uid, m.targetCode = row.top.code,
      m.targetDisplay = row.top.display, m.score = row.top.score, m.method = row.top.method,
      m.rationale = row.top.rationale)
WITH m, row, before
CREATE (h:{CHANGE} {{uid: randomUUID(), at: $now, by: $by, action: 'suggest',
                     before: $json(before), after: $json(row.top)}})
       -[:{REVISES}]->(m)
RETURN m.uid AS uid
"""

#: Point TARGET_CONCEPT at ``targetUid`` (removing it when there is none).
SYNC_TARGETS = f"""
UNWIND $uids AS uid
MATCH (m:{MAPPING} {{uid: uid}})
OPTIONAL MATCH (m)-[old:{TARGET_CONCEPT}]->(t0)
WITH m, old, t0 WHERE old IS NOT NULL AND (m.targetUid IS NULL OR t0.uid <> m.targetUid)
DELETE old
"""

ADD_TARGETS = f"""
UNWIND $uids AS uid
MATCH (m:{MAPPING} {{uid: uid}})
MATCH (t:{CONCEPT} {{uid: m.targetUid}})
MERGE (m)-[:{TARGET_CONCEPT}]->(t)
"""

GET_MAPPINGS = f"""
UNWIND $uids AS uid
MATCH (m:{MAPPING} {{uid: uid}})
RETURN m {{ .* }} AS mapping
"""

_LIST_WHERE = """
WHERE m.workspace = $workspace
  AND ($sourceSystem IS NULL OR m.sourceSystem = $sourceSystem)
  AND ($targetSystem IS NULL OR m.targetSystem = $targetSystem)
  AND ($statuses IS NULL OR m.status IN $statuses)
  AND ($reviewer IS NULL OR m.reviewer = $reviewer)
  AND ($minScore IS NULL OR coalesce(m.score, 0.0) >= $minScore)
  AND ($maxScore IS NULL OR coalesce(m.score, 0.0) <= $maxScore)
  AND ($text IS NULL OR toLower(m.sourceDisplay) CONTAINS $text
       OR toLower(m.sourceCode) CONTAINS $text
       OR toLower(coalesce(m.targetDisplay, '')) CONTAINS $text
       OR toLower(coalesce(m.targetCode, '')) CONTAINS $text)
"""

LIST_MAPPINGS = f"""
MATCH (m:{MAPPING})
{_LIST_WHERE}
WITH m ORDER BY coalesce(m.sourceFrequency, 0) DESC, m.sourceCode, m.uid
WITH collect(m) AS hits
RETURN size(hits) AS total, [m IN hits[$offset..$offset + $limit] | m {{ .* }}] AS page
"""

STATUS_COUNTS = f"""
MATCH (m:{MAPPING})
WHERE ($workspace IS NULL OR m.workspace = $workspace)
RETURN m.workspace AS workspace, m.sourceSystem AS sourceSystem,
       m.targetSystem AS targetSystem, m.status AS status, count(*) AS n
ORDER BY workspace, sourceSystem, targetSystem, status
"""

HISTORY = f"""
MATCH (h:{CHANGE})-[:{REVISES}]->(:{MAPPING} {{uid: $uid}})
RETURN h {{ .at, .by, .action, .before, .after, .comment }} AS change
ORDER BY h.at, h.uid
"""

UPDATE = f"""
UNWIND $rows AS row
MATCH (m:{MAPPING} {{uid: row.uid}})
WITH m, row, m {{ {", ".join("." + f for f in _MAPPING_FIELDS)} }} AS before
SET m += row.set, m.updatedAt = $now
WITH m, row, before
CREATE (h:{CHANGE} {{uid: randomUUID(), at: $now, by: $by, action: row.action,
                     before: $json(before), after: $json(row.set), comment: row.comment}})
       -[:{REVISES}]->(m)
RETURN m {{ .* }} AS mapping
"""


def _now() -> datetime:
    return datetime.now(UTC)


def _jsonify(value: Any) -> str:
    return orjson.dumps(value, default=str, option=orjson.OPT_SORT_KEYS).decode()


def _fill_json(query: str) -> str:
    """``$json(x)`` → APOC's JSON serialisation (history entries keep field maps as text)."""
    return query.replace("$json(", "apoc.convert.toJson(")


def _sync_targets(tx: neo4j.ManagedTransaction, uids: list[str]) -> None:
    tx.run(SYNC_TARGETS, uids=uids).consume()
    tx.run(ADD_TARGETS, uids=uids).consume()


@dataclass(frozen=True, slots=True)
class SuggestionRow:
    """Suggestions for one local code, ready to store."""

    workspace: str
    source_uid: str
    target_system: str
    frequency: int | None
    candidates: list[dict[str, Any]]
    engine: str

    @property
    def uid(self) -> str:
        return mapping_uid(self.workspace, self.source_uid, self.target_system)


def store_suggestions(
    driver: neo4j.Driver,
    rows: Sequence[SuggestionRow],
    *,
    by: str,
    database: str | None = None,
) -> int:
    """Write suggestions (one transaction); returns how many mappings changed. Unchanged
    candidates write nothing, so re-running a suggestion batch is a no-op."""
    if not rows:
        return 0
    params = [
        {
            "uid": r.uid,
            "workspace": r.workspace,
            "sourceUid": r.source_uid,
            "targetSystem": r.target_system,
            "frequency": r.frequency,
            "candidates": _jsonify(r.candidates),
            "engine": r.engine,
            "top": r.candidates[0] if r.candidates else {},
        }
        for r in rows
    ]

    def work(tx: neo4j.ManagedTransaction) -> list[str]:
        result = tx.run(_fill_json(UPSERT_SUGGESTIONS), rows=params, now=_now(), by=by)
        changed = [rec["uid"] for rec in result]
        _sync_targets(tx, changed)
        return changed

    with driver.session(database=database) as session:
        return len(session.execute_write(work))


@dataclass(frozen=True, slots=True)
class MappingUpdate:
    """One curation change; ``fields`` holds only what changes (keys of ``_MAPPING_FIELDS``)."""

    uid: str
    fields: dict[str, Any]
    action: str = "review"
    comment: str | None = None


def update_mappings(
    driver: neo4j.Driver,
    updates: Sequence[MappingUpdate],
    *,
    by: str,
    database: str | None = None,
) -> list[dict[str, Any]]:
    """Apply curation changes in one transaction, each with its history entry."""
    unknown = {k for u in updates for k in u.fields} - set(_MAPPING_FIELDS) - {"reviewedAt"}
    if unknown:
        raise ValueError(f"not mapping fields: {', '.join(sorted(unknown))}")
    rows = [
        {"uid": u.uid, "set": u.fields, "action": u.action, "comment": u.comment} for u in updates
    ]

    def work(tx: neo4j.ManagedTransaction) -> list[dict[str, Any]]:
        result = tx.run(_fill_json(UPDATE), rows=rows, now=_now(), by=by)
        out = [dict(rec["mapping"]) for rec in result]
        _sync_targets(tx, [u.uid for u in updates])
        return out

    with driver.session(database=database) as session:
        return session.execute_write(work)


def get_mappings(
    driver: neo4j.Driver, uids: Sequence[str], *, database: str | None = None
) -> list[dict[str, Any]]:
    rows = run_read(driver, GET_MAPPINGS, {"uids": list(uids)}, database)
    return [dict(r["mapping"]) for r in rows]


@dataclass(frozen=True, slots=True)
class MappingFilter:
    workspace: str = "main"
    source_system: str | None = None
    target_system: str | None = None
    statuses: tuple[str, ...] | None = None
    reviewer: str | None = None
    min_score: float | None = None
    max_score: float | None = None
    text: str | None = None


def list_mappings(
    driver: neo4j.Driver,
    flt: MappingFilter,
    *,
    offset: int = 0,
    limit: int = 50,
    database: str | None = None,
) -> tuple[list[dict[str, Any]], int]:
    params = {
        "workspace": flt.workspace,
        "sourceSystem": flt.source_system,
        "targetSystem": flt.target_system,
        "statuses": list(flt.statuses) if flt.statuses else None,
        "reviewer": flt.reviewer,
        "minScore": flt.min_score,
        "maxScore": flt.max_score,
        "text": flt.text.lower() if flt.text else None,
        "offset": offset,
        "limit": limit,
    }
    rows = run_read(driver, LIST_MAPPINGS, params, database)
    if not rows:
        return [], 0
    return [dict(m) for m in rows[0]["page"]], int(rows[0]["total"])


def status_counts(
    driver: neo4j.Driver, workspace: str | None = None, *, database: str | None = None
) -> list[dict[str, Any]]:
    return [dict(r) for r in run_read(driver, STATUS_COUNTS, {"workspace": workspace}, database)]


def history(driver: neo4j.Driver, uid: str, *, database: str | None = None) -> list[dict[str, Any]]:
    return [dict(r["change"]) for r in run_read(driver, HISTORY, {"uid": uid}, database)]


# -- re-review when the target system changes --------------------------------------------------

#: Mappings whose target is retired or changed in the given (newest) version of its system.
STALE_TARGETS = f"""
MATCH (v:{Label.CODE_SYSTEM.value} {{uid: $versionUid}})
MATCH (m:{MAPPING} {{targetSystem: v.system}})-[:{TARGET_CONCEPT}]->(t:{CONCEPT})
MATCH (t)-[r:{IN_VERSION}]->(v)
WHERE r.status = 'retired' OR coalesce(r.changed, false)
RETURN m.uid AS uid, t.code AS code, r.status AS status, r.previousDisplay AS previous,
       r.display AS display, v.version AS version
"""


def stale_targets(
    driver: neo4j.Driver, version_uid: str, *, database: str | None = None
) -> list[dict[str, Any]]:
    return [dict(r) for r in run_read(driver, STALE_TARGETS, {"versionUid": version_uid}, database)]


# -- concept maps: publish, apply, read --------------------------------------------------------

NEXT_VERSION = f"""
OPTIONAL MATCH (c:{CMAP} {{name: $name}})
RETURN max(toInteger(c.version)) AS latest
"""

PUBLISH = f"""
OPTIONAL MATCH (old:{CMAP} {{name: $name, current: true}})
SET old.current = false
WITH count(old) AS _
CREATE (c:{CMAP} {{uid: $name + '|' + $version, name: $name, version: $version,
                   sourceSystem: $sourceSystem, targetSystem: $targetSystem,
                   workspace: $workspace, publishedAt: $now, publishedBy: $by,
                   elements: size($elements), document: $document, current: true}})
WITH c
OPTIONAL MATCH ()-[stale:{MAPS_TO} {{map: $name}}]->()
DELETE stale
WITH DISTINCT c
UNWIND $elements AS e
MATCH (s:{CONCEPT} {{uid: e.sourceUid}}), (t:{CONCEPT} {{uid: e.targetUid}})
MERGE (s)-[m:{MAPS_TO} {{map: $name}}]->(t)
SET m.mapVersion = $version, m.equivalence = e.equivalence, m.method = e.method,
    m.confidence = e.confidence, m.published = true
RETURN count(m) AS links
"""

#: Re-derive the standard codings of facts coded with the map's source codes.
UNAPPLY = f"""
MATCH (:{CONCEPT} {{system: $sourceSystem}})<-[:{CODED_AS}]-(f)-[r:{CODED_AS} {{map: $name}}]->()
DELETE r
RETURN count(r) AS n
"""

APPLY = f"""
MATCH (cm:{CMAP} {{current: true}})
WHERE $name IS NULL OR cm.name = $name
MATCH (l:{CONCEPT} {{system: cm.sourceSystem}})-[m:{MAPS_TO} {{map: cm.name}}]->(t:{CONCEPT})
WHERE m.equivalence IN $applicable
MATCH (f:{_FACTS})-[d:{CODED_AS}]->(l) WHERE d.map IS NULL
  AND NOT EXISTS {{ (f)-[:{CODED_AS} {{map: cm.name}}]->(t) }}
MERGE (f)-[r:{CODED_AS} {{map: cm.name}}]->(t)
SET r.mapVersion = cm.version, r.method = m.method, r.confidence = m.confidence,
    r.equivalence = m.equivalence
RETURN count(r) AS n
"""

CONCEPT_MAPS = f"""
MATCH (c:{CMAP})
WHERE ($sourceSystem IS NULL OR c.sourceSystem = $sourceSystem)
  AND ($name IS NULL OR c.name = $name)
RETURN c {{ .uid, .name, .version, .sourceSystem, .targetSystem, .workspace, .publishedAt,
           .publishedBy, .elements, .current }} AS map
ORDER BY c.name, toInteger(c.version) DESC
"""

CONCEPT_MAP_DOCUMENT = f"""
MATCH (c:{CMAP} {{name: $name}})
WHERE ($version IS NULL AND c.current) OR c.version = $version
RETURN c.document AS document
"""


@dataclass(frozen=True, slots=True)
class PublishedElement:
    source_uid: str
    target_uid: str | None
    equivalence: str
    method: str | None
    confidence: float | None


def next_version(driver: neo4j.Driver, name: str, *, database: str | None = None) -> str:
    rows = run_read(driver, NEXT_VERSION, {"name": name}, database)
    latest = rows[0]["latest"] if rows else None
    return str((latest or 0) + 1)


#: The records whose facts a map codes (for the change feed after publishing).
CODED_RECORDS = f"""
MATCH ()-[:{CODED_AS} {{map: $name}}]-(f)-[:{RelType.ABOUT.value}]->(r:{Label.PATIENT.value})
RETURN r.uid AS record, collect(DISTINCT head(labels(f))) AS kinds
"""


def coded_records(
    driver: neo4j.Driver, name: str, *, database: str | None = None
) -> dict[str, list[str]]:
    """Patient record uid -> kinds of facts the map ``name`` gives standard codes."""
    rows = run_read(driver, CODED_RECORDS, {"name": name}, database)
    return {r["record"]: list(r["kinds"]) for r in rows}


def publish_concept_map(
    driver: neo4j.Driver,
    *,
    name: str,
    version: str,
    source_system: str,
    target_system: str,
    workspace: str,
    elements: Sequence[PublishedElement],
    document: Mapping[str, Any],
    by: str,
    database: str | None = None,
) -> tuple[int, int]:
    """Create the version, replace the map's MAPS_TO links and re-derive the facts' standard
    codings, all in one transaction. Returns (links, facts coded)."""
    linked = [
        {
            "sourceUid": e.source_uid,
            "targetUid": e.target_uid,
            "equivalence": e.equivalence,
            "method": e.method,
            "confidence": e.confidence,
        }
        for e in elements
        if e.target_uid is not None
    ]

    def work(tx: neo4j.ManagedTransaction) -> tuple[int, int]:
        links = tx.run(
            PUBLISH,
            name=name,
            version=version,
            sourceSystem=source_system,
            targetSystem=target_system,
            workspace=workspace,
            elements=linked,
            document=_jsonify(document),
            now=_now(),
            by=by,
        ).single()
        tx.run(UNAPPLY, name=name, sourceSystem=source_system).consume()
        coded = tx.run(APPLY, name=name, applicable=list(APPLICABLE)).single()
        return int(links["links"]) if links else 0, int(coded["n"]) if coded else 0

    with driver.session(database=database) as session:
        return session.execute_write(work)


def apply_concept_maps(driver: neo4j.Driver, *, database: str | None = None) -> int:
    """Give facts loaded since a map was published their standard codings (idempotent)."""
    records, _, _ = driver.execute_query(
        APPLY, {"name": None, "applicable": list(APPLICABLE)}, database_=database
    )
    return int(records[0]["n"]) if records else 0


def concept_maps(
    driver: neo4j.Driver,
    *,
    source_system: str | None = None,
    name: str | None = None,
    database: str | None = None,
) -> list[dict[str, Any]]:
    rows = run_read(driver, CONCEPT_MAPS, {"sourceSystem": source_system, "name": name}, database)
    return [dict(r["map"]) for r in rows]


def concept_map_document(
    driver: neo4j.Driver, name: str, version: str | None = None, *, database: str | None = None
) -> dict[str, Any] | None:
    rows = run_read(driver, CONCEPT_MAP_DOCUMENT, {"name": name, "version": version}, database)
    if not rows or rows[0]["document"] is None:
        return None
    document: dict[str, Any] = orjson.loads(rows[0]["document"])
    return document


EXISTING = f"""
UNWIND $uids AS uid
MATCH (c:{CONCEPT} {{uid: uid}})
RETURN c.uid AS uid, c.display AS display
"""


def existing_concepts(
    driver: neo4j.Driver, uids: Sequence[str], *, database: str | None = None
) -> set[str]:
    return {r["uid"] for r in run_read(driver, EXISTING, {"uids": list(uids)}, database)}


def concept_display(driver: neo4j.Driver, uid: str, *, database: str | None = None) -> str | None:
    rows = run_read(driver, EXISTING, {"uids": [uid]}, database)
    return rows[0]["display"] if rows else None
