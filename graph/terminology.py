"""Code systems in the graph: phase two of a terminology load, and the FHIR-style operations.

Model: a ``CodeSystem`` node per (system URI, version); ``Concept`` nodes keyed ``system|code``
(the same nodes the FHIR loader creates from codings) with ``display``, designations as
parallel lists (``designationValues`` / ``designationLanguages`` / ``designationUses``, plus
``designationText`` joined for the full-text index ``concept_terms``), ``properties`` as JSON;
``IS_A`` to direct parents; ``(Concept)-[:IN_VERSION {display, status}]->(CodeSystem)`` per
version, so a later complete version marks the codes it lacks ``retired`` and those whose
display changed ``changed``; ``MAPS_TO {map, equivalence, method}`` between systems.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import neo4j
import orjson

from graph.reader import PERSON_FIELDS, GraphReader
from graph.writer import WriteStats, write_batch
from ontology.model import FACT_LABELS, Label, RelType
from ontology.records import GraphBatch
from terminology.model import ICD10, ICD10CM, ParsedSystem

CONCEPT, CODE_SYSTEM = Label.CONCEPT.value, Label.CODE_SYSTEM.value
IS_A, IN_VERSION, MAPS_TO = RelType.IS_A.value, RelType.IN_VERSION.value, RelType.MAPS_TO.value

ICD10_IDENTITY_MAP = "icd10-who-cm-identity"
_FACTS = "|".join(sorted(label.value for label in FACT_LABELS))


def concept_uid(system: str, code: str) -> str:
    return f"{system}|{code}"


# -- phase two: write --------------------------------------------------------------------------


def system_batch(parsed: ParsedSystem) -> GraphBatch:
    """The graph rows of one parsed code system version."""
    info = parsed.info
    batch = GraphBatch()
    version_key = (Label.CODE_SYSTEM, info.uid)
    batch.node(
        Label.CODE_SYSTEM,
        info.uid,
        {
            "system": info.url,
            "version": info.version,
            "name": info.name,
            "title": info.title,
            "source": info.source,
            "licence": info.licence,
            "content": info.content,
            "hierarchical": info.hierarchical,
            "note": info.note,
            "concepts": len(parsed.concepts),
        },
    )
    for c in parsed.concepts:
        uid = concept_uid(info.url, c.code)
        ds = c.designations
        batch.node(
            Label.CONCEPT,
            uid,
            {
                "system": info.url,
                "code": c.code,
                "display": c.display,
                "designationValues": [d.value for d in ds],
                "designationLanguages": [d.language for d in ds],
                "designationUses": [d.use for d in ds],
                "designationText": " | ".join(d.value for d in ds) or None,
                "properties": orjson.dumps(dict(c.properties), option=orjson.OPT_SORT_KEYS).decode()
                if c.properties
                else None,
            },
        )
        batch.rel(
            RelType.IN_VERSION,
            (Label.CONCEPT, uid),
            version_key,
            {"display": c.display, "status": c.status},
        )
        for parent in c.parents:
            batch.rel(
                RelType.IS_A, (Label.CONCEPT, uid), (Label.CONCEPT, concept_uid(info.url, parent))
            )
    return batch


MARK_RETIRED = f"""
MATCH (new:{CODE_SYSTEM} {{uid: $uid}})
MATCH (c:{CONCEPT})-[old:{IN_VERSION}]->(prev:{CODE_SYSTEM} {{system: $system}})
WHERE prev.uid <> $uid AND old.status <> 'retired' AND NOT EXISTS {{ (c)-[:{IN_VERSION}]->(new) }}
WITH DISTINCT c, new, old
MERGE (c)-[r:{IN_VERSION}]->(new)
SET r.status = 'retired', r.display = old.display, c.retiredIn = $version
RETURN count(DISTINCT c) AS n
"""

#: A code a later version has again is no longer retired.
UNRETIRE = f"""
MATCH (:{CODE_SYSTEM} {{uid: $uid}})<-[r:{IN_VERSION} {{status: 'active'}}]-(c:{CONCEPT})
WHERE c.retiredIn IS NOT NULL
REMOVE c.retiredIn
RETURN count(c) AS n
"""

MARK_CHANGED = f"""
MATCH (new:{CODE_SYSTEM} {{uid: $uid}})<-[r:{IN_VERSION}]-(c:{CONCEPT})
      -[old:{IN_VERSION}]->(prev:{CODE_SYSTEM} {{system: $system}})
WHERE prev.uid <> $uid AND r.status = 'active' AND old.status <> 'retired'
  AND old.display <> r.display
SET r.changed = true, r.previousDisplay = old.display
RETURN count(DISTINCT c) AS n
"""

# WHO ICD-10 and ICD-10-CM share most codes: an identity map where both have the code, marked
# as such (equivalent when the displays agree, else related-to for a terminologist to review).
IDENTITY_MAP = f"""
MATCH (a:{CONCEPT})-[:{IN_VERSION}]->(:{CODE_SYSTEM} {{system: $source}})
WITH DISTINCT a
MATCH (b:{CONCEPT} {{uid: $target + '|' + a.code}})
      -[:{IN_VERSION}]->(:{CODE_SYSTEM} {{system: $target}})
WITH DISTINCT a, b
MERGE (a)-[m:{MAPS_TO} {{map: $map}}]->(b)
SET m.method = 'identical-code',
    m.equivalence = CASE WHEN toLower(a.display) = toLower(b.display)
                         THEN 'equivalent' ELSE 'relatedto' END
RETURN count(m) AS n
"""

SYSTEMS_LOADED = f"MATCH (s:{CODE_SYSTEM}) RETURN DISTINCT s.system AS system"


@dataclass(slots=True)
class SystemLoad:
    """What loading one code system version did."""

    system: str
    version: str
    concepts: int
    problems: list[str]
    notes: dict[str, int]
    write: WriteStats
    retired: int = 0
    changed: int = 0
    seconds: float = 0.0


@dataclass(slots=True)
class TerminologyLoad:
    systems: list[SystemLoad] = field(default_factory=list)
    mapped: int = 0
    #: Workbench mappings flagged for re-review because a target was retired or changed.
    flagged: int = 0

    @property
    def ok(self) -> bool:
        return all(not s.problems and not s.write.dangling for s in self.systems)


def write_system(
    driver: neo4j.Driver,
    parsed: ParsedSystem,
    *,
    batch_size: int = 5000,
    database: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> SystemLoad:
    """Write one version (idempotent: MERGE on uid, unchanged nodes left alone)."""
    started = time.perf_counter()
    batch = system_batch(parsed)
    stats = write_batch(driver, batch, batch_size=batch_size, database=database, progress=progress)
    info = parsed.info
    load = SystemLoad(
        system=info.url,
        version=info.version,
        concepts=len(parsed.concepts),
        problems=[str(p) for p in parsed.problems],
        notes=dict(parsed.notes),
        write=stats,
    )
    if info.content == "complete":  # a fragment says nothing about codes it lacks
        params = {"uid": info.uid, "system": info.url, "version": info.version}
        _count(driver, UNRETIRE, params, database)
        load.retired = _count(driver, MARK_RETIRED, params, database)
        load.changed = _count(driver, MARK_CHANGED, params, database)
    load.seconds = time.perf_counter() - started
    return load


def derive_identity_maps(driver: neo4j.Driver, *, database: str | None = None) -> int:
    """MAPS_TO both ways between WHO ICD-10 and ICD-10-CM where both have the code."""
    records, _, _ = driver.execute_query(SYSTEMS_LOADED, database_=database)
    loaded = {r["system"] for r in records}
    if not {ICD10, ICD10CM} <= loaded:
        return 0
    return sum(
        _count(
            driver, IDENTITY_MAP, {"source": a, "target": b, "map": ICD10_IDENTITY_MAP}, database
        )
        for a, b in ((ICD10, ICD10CM), (ICD10CM, ICD10))
    )


def load_systems(
    driver: neo4j.Driver,
    systems: Iterable[ParsedSystem],
    *,
    batch_size: int = 5000,
    database: str | None = None,
    progress: Callable[[int], None] | None = None,
    on_system: Callable[[ParsedSystem], None] | None = None,
) -> TerminologyLoad:
    report = TerminologyLoad()
    for parsed in systems:
        if on_system is not None:
            on_system(parsed)
        report.systems.append(
            write_system(
                driver, parsed, batch_size=batch_size, database=database, progress=progress
            )
        )
    report.mapped = derive_identity_maps(driver, database=database)
    return report


def _count(driver: neo4j.Driver, query: str, params: dict[str, Any], database: str | None) -> int:
    records, _, _ = driver.execute_query(neo4j.Query(query), params, database_=database)
    return int(records[0]["n"]) if records else 0


# -- operations (reads) ------------------------------------------------------------------------

_CONCEPT_FIELDS = (
    ".uid, .system, .code, .display, .designationValues, .designationLanguages, "
    ".designationUses, .properties"
)

LOOKUP = f"""
MATCH (c:{CONCEPT} {{uid: $uid}})
RETURN c {{ {_CONCEPT_FIELDS} }} AS concept,
       [(c)-[:{IS_A}]->(p:{CONCEPT}) | p {{ .code, .display }}] AS parents,
       COUNT {{ (c)<-[:{IS_A}]-(:{CONCEPT}) }} AS children,
       [(c)-[v:{IN_VERSION}]->(s:{CODE_SYSTEM}) | {{version: s.version, display: v.display,
          status: v.status, changed: coalesce(v.changed, false), content: s.content}}] AS versions
"""

SUBSUMES = f"""
MATCH (a:{CONCEPT} {{uid: $a}}), (b:{CONCEPT} {{uid: $b}})
RETURN EXISTS {{ (b)-[:{IS_A}*1..]->(a) }} AS aSubsumesB,
       EXISTS {{ (a)-[:{IS_A}*1..]->(b) }} AS bSubsumesA
"""

PARENTS_OF = f"""
UNWIND $uids AS uid
MATCH (:{CONCEPT} {{uid: uid}})-[:{IS_A}]->(p:{CONCEPT})
RETURN uid, collect(p.uid) AS parents
"""

_FILTER = (
    "($filter IS NULL OR toLower(c.display) CONTAINS $filter "
    "OR any(d IN coalesce(c.designationValues, []) WHERE toLower(d) CONTAINS $filter))"
)

EXPAND_UNDER = f"""
MATCH (:{CONCEPT} {{uid: $root}})<-[:{IS_A}*1..]-(c:{CONCEPT})
WITH DISTINCT c WHERE {_FILTER}
WITH c ORDER BY c.code
WITH collect(c) AS hits
RETURN size(hits) AS total,
       [c IN hits WHERE $after IS NULL OR c.code > $after][..$limit] AS page
"""

EXPAND_SYSTEM = f"""
MATCH (c:{CONCEPT} {{system: $system}})
WHERE {_FILTER}
WITH c ORDER BY c.code
WITH collect(c) AS hits
RETURN size(hits) AS total,
       [c IN hits WHERE $after IS NULL OR c.code > $after][..$limit] AS page
"""

DESCENDANT_CODES = f"""
MATCH (:{CONCEPT} {{uid: $uid}})<-[:{IS_A}*1..]-(c:{CONCEPT})
RETURN DISTINCT c.code AS code ORDER BY code
"""

SEARCH = f"""
CALL db.index.fulltext.queryNodes('concept_terms', $lucene) YIELD node AS c, score
WHERE ($systems IS NULL OR c.system IN $systems)
  AND ($language IS NULL OR $language IN coalesce(c.designationLanguages, [])
       OR ($language = 'en' AND c.display IS NOT NULL))
RETURN c {{ {_CONCEPT_FIELDS} }} AS concept, score
ORDER BY score DESC, c.system, c.code LIMIT $limit
"""

#: The baseline the benchmark compares the full-text index with: a label scan.
SEARCH_SCAN = f"""
MATCH (c:{CONCEPT})
WHERE ($systems IS NULL OR c.system IN $systems)
  AND all(t IN $terms WHERE toLower(c.display) CONTAINS t
      OR toLower(coalesce(c.designationText, '')) CONTAINS t)
RETURN c {{ {_CONCEPT_FIELDS} }} AS concept, 1.0 AS score
ORDER BY c.system, c.code LIMIT $limit
"""

TRANSLATE = f"""
MATCH (:{CONCEPT} {{uid: $uid}})-[m:{MAPS_TO}]->(t:{CONCEPT} {{system: $target}})
RETURN t {{ .system, .code, .display }} AS target,
       m {{ .map, .equivalence, .method }} AS mapping
ORDER BY t.code
"""

CODE_SYSTEMS = f"""
MATCH (s:{CODE_SYSTEM})
RETURN s {{ .system, .version, .name, .title, .source, .licence, .content, .hierarchical,
           .note, .concepts }} AS system
ORDER BY s.system, s.version
"""

PATIENTS_WITH_CODE = f"""
MATCH (root:{CONCEPT} {{uid: $uid}})
MATCH (root)<-[:{IS_A}*0..]-(c:{CONCEPT})
WHERE $descendants OR c = root
MATCH (c)<-[:{RelType.CODED_AS.value}]-(f:{_FACTS})
      -[:{RelType.ABOUT.value}]->(:{Label.PATIENT.value})-[:{RelType.RECORD_OF.value}]->(p:{Label.PERSON.value})
WITH p, collect(DISTINCT {{labels: labels(f), code: c {{ .system, .code, .display }}}}) AS hits
RETURN p {{ {PERSON_FIELDS} }} AS person, hits
ORDER BY p.name, p.uid LIMIT $limit
"""


def lookup(reader: GraphReader, system: str, code: str) -> dict[str, Any] | None:
    rows = reader.read(LOOKUP, {"uid": concept_uid(system, code)})
    return dict(rows[0]) if rows else None


def subsumes(reader: GraphReader, system: str, code_a: str, code_b: str) -> str | None:
    """FHIR $subsumes outcome, or None when either code is unknown."""
    if code_a == code_b:
        return "equivalent" if lookup(reader, system, code_a) else None
    rows = reader.read(
        SUBSUMES, {"a": concept_uid(system, code_a), "b": concept_uid(system, code_b)}
    )
    if not rows:
        return None
    if rows[0]["aSubsumesB"]:
        return "subsumes"
    if rows[0]["bSubsumesA"]:
        return "subsumed-by"
    return "not-subsumed"


def subsumes_by_walk(reader: GraphReader, system: str, code_a: str, code_b: str) -> bool:
    """Baseline for the benchmark: walk B's parents level by level from Python."""
    target = concept_uid(system, code_a)
    frontier, seen = [concept_uid(system, code_b)], set()
    while frontier:
        rows = reader.read(PARENTS_OF, {"uids": frontier})
        frontier = []
        for row in rows:
            for parent in row["parents"]:
                if parent == target:
                    return True
                if parent not in seen:
                    seen.add(parent)
                    frontier.append(parent)
    return False


def expand(
    reader: GraphReader,
    system: str,
    root: str | None,
    text: str | None,
    first: int,
    after: str | None,
) -> tuple[list[dict[str, Any]], int]:
    params = {
        "filter": text.lower() if text else None,
        "after": after,
        "limit": first,
        "system": system,
        "root": concept_uid(system, root) if root else None,
    }
    rows = reader.read(EXPAND_UNDER if root else EXPAND_SYSTEM, params)
    if not rows:
        return [], 0
    page = [{k: c.get(k) for k in ("uid", "system", "code", "display")} for c in rows[0]["page"]]
    return page, int(rows[0]["total"])


def descendants(reader: GraphReader, system: str, code: str) -> list[str]:
    """Codes under ``code`` (transitively, ``code`` itself excluded), sorted."""
    rows = reader.read(DESCENDANT_CODES, {"uid": concept_uid(system, code)})
    return [r["code"] for r in rows]


def search(
    reader: GraphReader,
    lucene: str,
    systems: list[str] | None,
    language: str | None,
    limit: int,
) -> list[dict[str, Any]]:
    rows = reader.read(
        SEARCH, {"lucene": lucene, "systems": systems, "language": language, "limit": limit}
    )
    return [{**dict(r["concept"]), "score": float(r["score"])} for r in rows]


def search_scan(
    reader: GraphReader, text: str, systems: list[str] | None, limit: int
) -> list[dict[str, Any]]:
    terms = [t.lower() for t in text.split()]
    rows = reader.read(SEARCH_SCAN, {"terms": terms, "systems": systems, "limit": limit})
    return [{**dict(r["concept"]), "score": float(r["score"])} for r in rows]


def translate(reader: GraphReader, system: str, code: str, target: str) -> list[dict[str, Any]]:
    rows = reader.read(TRANSLATE, {"uid": concept_uid(system, code), "target": target})
    return [{**dict(r["target"]), **dict(r["mapping"])} for r in rows]


def code_systems(reader: GraphReader) -> list[dict[str, Any]]:
    return [dict(r["system"]) for r in reader.read(CODE_SYSTEMS, {})]


def patients_with_code(
    reader: GraphReader, system: str, code: str, include_descendants: bool, limit: int
) -> list[dict[str, Any]]:
    rows = reader.read(
        PATIENTS_WITH_CODE,
        {"uid": concept_uid(system, code), "descendants": include_descendants, "limit": limit},
    )
    # with the facts that matched: finding a person by a code tells they have it (consent)
    return [dict(r["person"]) | {"hits": list(r["hits"])} for r in rows]
