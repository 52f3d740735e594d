"""Drug knowledge and medication lists in the graph (Cypher of ``drugs/``).

Knowledge: one code system version per knowledge base (``ANSM``), whose concepts are its
substances and classes (a substance ``IS_A`` each of its classes, so a class-level interaction
reaches every member), and one ``DrugInteraction`` per curated pair ``-[:INTERACTANT {side}]->``
its two concepts. Each substance concept lists, as properties, the drug dictionary ingredients
and RxNorm ingredient codes it stands for. Text-mined ``InteractionStatement`` nodes are kept
apart, keyed by the sorted ingredient pair (``pairKey``).

Reads: :data:`PERSON_MEDICATIONS` (every medication record of a person, with its coding and
domain), :func:`interactions_among` (curated interactions whose two sides both match the
checked list).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import neo4j
import orjson

from graph.connection import run_read, run_write
from graph.shadow import CONDITIONS
from graph.terminology import SystemLoad, concept_uid, write_system
from graph.writer import WriteStats, content_hash, write_batch
from ontology.model import Label, RelType
from ontology.records import GraphBatch

if TYPE_CHECKING:
    from drugs.model import KnownInteraction
    from terminology.model import ParsedSystem

_CON, _DI, _ST = (
    Label.CONCEPT.value,
    Label.DRUG_INTERACTION.value,
    Label.INTERACTION_STATEMENT.value,
)
_P, _R, _DOM = Label.PERSON.value, Label.PATIENT.value, Label.DOMAIN.value
_MR, _MS = Label.MEDICATION_REQUEST.value, Label.MEDICATION_STATEMENT.value
_INT, _IS_A = RelType.INTERACTANT.value, RelType.IS_A.value
_HAS_ING = RelType.HAS_INGREDIENT.value
_RECORD_OF, _ABOUT, _CODED, _IN_DOMAIN, _MAPS = (
    RelType.RECORD_OF.value,
    RelType.ABOUT.value,
    RelType.CODED_AS.value,
    RelType.IN_DOMAIN.value,
    RelType.MAPS_TO.value,
)


@dataclass(frozen=True, slots=True)
class InteractionRow:
    """A curated interaction whose side ``a`` matched ``a_code`` and side ``b`` ``b_code``
    (concept codes: a substance, or a class one of the checked substances belongs to)."""

    uid: str
    a_code: str
    b_code: str
    props: dict[str, Any]


def interaction_batch(system: str, interactions: Iterable[KnownInteraction]) -> GraphBatch:
    """``DrugInteraction`` nodes and their two ``INTERACTANT`` links."""
    batch = GraphBatch()
    for i in interactions:
        batch.node(
            Label.DRUG_INTERACTION,
            i.uid,
            {
                "severity": i.severity.value,
                "sourceLevels": [lv.source_level for lv in i.levels],
                "levelSeverities": [lv.severity.value for lv in i.levels],
                "management": [lv.management for lv in i.levels],
                "mechanism": i.mechanism,
                "description": i.description,
                "seeAlso": i.see_also or None,
                "source": i.source,
                "version": i.version,
                "system": system,
            },
        )
        for side, code in (("a", i.a), ("b", i.b)):
            batch.rel(
                RelType.INTERACTANT,
                (Label.DRUG_INTERACTION, i.uid),
                (Label.CONCEPT, concept_uid(system, code)),
                {"side": side},
            )
    return batch


def write_knowledge(
    driver: neo4j.Driver,
    parsed_system: ParsedSystem,
    interactions: Sequence[KnownInteraction],
    *,
    database: str | None = None,
    retire_version: str | None = None,
) -> tuple[SystemLoad, WriteStats, int]:
    """Write a knowledge base's code system and its interactions (idempotent); interactions of
    the same source no longer in it are removed (a new thesaurus edition replaces the old)."""
    system_load = write_system(driver, parsed_system, database=database)
    system = parsed_system.info.url
    stats = write_batch(driver, interaction_batch(system, interactions), database=database)
    keep = [i.uid for i in interactions]
    # what checks cache (drugs.knowledge.KnowledgeIndex) is keyed by this: it changes with any
    # concept or interaction, and not with a reload of the same edition
    digest = content_hash(
        [
            [(c.code, c.parents, dict(c.properties)) for c in parsed_system.concepts],
            [(i.uid, i.severity.value, i.a, i.b) for i in interactions],
        ]
    )
    run_write(
        driver,
        f"MATCH (s:`{Label.CODE_SYSTEM.value}` {{uid: $uid}}) SET s.knowledgeHash = $h",
        {"uid": parsed_system.info.uid, "h": digest},
        database,
    )
    records = run_write(
        driver,
        f"MATCH (i:`{_DI}` {{system: $system}}) WHERE NOT i.uid IN $keep "
        "DETACH DELETE i RETURN count(*) AS n",
        {"system": system, "keep": keep},
        database,
    )
    return system_load, stats, int(records[0]["n"]) if records else 0


SUBSTANCE_INDEX = f"""
MATCH (c:`{_CON}` {{system: $system}})
RETURN c.code AS code, c.display AS display, c.properties AS properties,
       [(c)-[:`{_IS_A}`]->(k:`{_CON}`) | k.code] AS classes
"""

KNOWLEDGE_VERSION = f"""
MATCH (s:`{Label.CODE_SYSTEM.value}` {{system: $system}})
RETURN s.version AS version, s.knowledgeHash AS hash ORDER BY s.version DESC LIMIT 1
"""


def knowledge_version(
    driver: neo4j.Driver, system: str, *, database: str | None = None
) -> str | None:
    """The stored knowledge base's version and content hash (changes on every reload that
    changed it), or None when it is not loaded."""
    rows = run_read(driver, KNOWLEDGE_VERSION, {"system": system}, database)
    return f"{rows[0]['version']}:{rows[0]['hash']}" if rows else None


def substance_rows(
    driver: neo4j.Driver, system: str, *, database: str | None = None
) -> list[dict[str, Any]]:
    """The knowledge base's concepts with their properties and direct classes."""
    rows = []
    for r in run_read(driver, SUBSTANCE_INDEX, {"system": system}, database):
        props = orjson.loads(r["properties"]) if r["properties"] else {}
        rows.append({**props, "code": r["code"], "display": r["display"], "classes": r["classes"]})
    return rows


INTERACTIONS_AMONG = f"""
UNWIND $anchors AS code
MATCH (x:`{_CON}` {{uid: $system + '|' + code}})<-[ra:`{_INT}`]-(i:`{_DI}`)
      -[rb:`{_INT}`]->(y:`{_CON}`)
WHERE ra.side = 'a' AND rb.side = 'b' AND y.code IN $anchors AND y.system = $system
RETURN i.uid AS uid, x.code AS a, y.code AS b, properties(i) AS props
"""


def interactions_among(
    driver: neo4j.Driver, system: str, anchors: Sequence[str], *, database: str | None = None
) -> list[InteractionRow]:
    """Curated interactions both of whose sides are among ``anchors`` (substance and class
    codes of the checked drugs)."""
    if not anchors:
        return []
    rows = run_read(
        driver, INTERACTIONS_AMONG, {"system": system, "anchors": list(anchors)}, database
    )
    return [InteractionRow(r["uid"], r["a"], r["b"], dict(r["props"])) for r in rows]


PERSON_MEDICATIONS = f"""
MATCH (:`{_P}` {{uid: $person}})<-[:`{_RECORD_OF}`]-(r:`{_R}`)
OPTIONAL MATCH (r)-[:`{_IN_DOMAIN}`]->(d:`{_DOM}`)
MATCH (r)<-[:`{_ABOUT}`]-(m)
WHERE (m:`{_MR}` OR m:`{_MS}`) AND (m.date IS NULL OR m.date <= $asOf)
OPTIONAL MATCH (m)-[:`{_CODED}`]->(k:`{_CON}`)
RETURN m.uid AS uid, CASE WHEN m:`{_MR}` THEN 'MedicationRequest' ELSE 'MedicationStatement'
       END AS kind, m.status AS status, m.date.epochSeconds AS t, m.sourceDomain AS domain,
       d.kind AS domainKind, d.name AS domainName, m.display AS display, m.dose AS dose,
       m.note AS note, coalesce(m.patientReported, false) AS patientReported,
       k.system AS system, k.code AS code, k.display AS conceptDisplay,
       [(k)-[:`{_MAPS}`]->(s:`{_CON}`) | s.display] AS mappedDisplays
ORDER BY t
"""


def person_medications(
    driver: neo4j.Driver, person: str, as_of: datetime, *, database: str | None = None
) -> list[dict[str, Any]]:
    return [
        dict(r)
        for r in run_read(driver, PERSON_MEDICATIONS, {"person": person, "asOf": as_of}, database)
    ]


MEDICATION_CONCEPTS = f"""
MATCH (m)-[:`{_CODED}`]->(k:`{_CON}`) WHERE m:`{_MR}` OR m:`{_MS}`
RETURN DISTINCT k.uid AS uid, k.display AS display,
       [(k)-[:`{_MAPS}`]->(s:`{_CON}`) | s.display] AS mappedDisplays
"""

LINK_INGREDIENTS = f"""
UNWIND $rows AS row
MATCH (k:`{_CON}` {{uid: row.concept}})
OPTIONAL MATCH (k)-[old:`{_HAS_ING}`]->(gone:`{_CON}`)
WHERE gone.system = $system AND NOT gone.uid IN row.substances
DELETE old
WITH DISTINCT k, row
UNWIND row.substances AS uid
MATCH (s:`{_CON}` {{uid: uid}})
MERGE (k)-[r:`{_HAS_ING}`]->(s)
RETURN count(r) AS n
"""


def medication_concepts(
    driver: neo4j.Driver, *, database: str | None = None
) -> list[dict[str, Any]]:
    """Every concept a medication record is coded with (products, local drug codes)."""
    return [dict(r) for r in run_read(driver, MEDICATION_CONCEPTS, {}, database)]


def link_ingredients(
    driver: neo4j.Driver,
    system: str,
    links: Mapping[str, Sequence[str]],
    *,
    database: str | None = None,
) -> int:
    """``HAS_INGREDIENT`` from each medication concept to the knowledge base's substance
    concepts (given by uid); stale links of that knowledge base are removed."""
    rows = [{"concept": k, "substances": list(v)} for k, v in links.items()]
    if not rows:
        return 0
    records = run_write(driver, LINK_INGREDIENTS, {"rows": rows, "system": system}, database)
    return int(records[0]["n"]) if records else 0


def active_conditions(
    driver: neo4j.Driver, person: str, as_of: datetime, *, database: str | None = None
) -> list[str]:
    """Concept uids of the person's conditions active at ``as_of`` (every domain)."""
    rows = run_read(driver, CONDITIONS, {"persons": [person], "asOf": as_of}, database)
    return list(rows[0]["codes"]) if rows else []


PERSON_EXISTS = f"MATCH (p:`{_P}` {{uid: $person}}) RETURN p.uid AS uid"

# --------------------------------------------------------------------------- literature


def statement_batch(statements: Iterable[dict[str, Any]]) -> GraphBatch:
    batch = GraphBatch()
    for s in statements:
        batch.node(
            Label.INTERACTION_STATEMENT, s["uid"], {k: v for k, v in s.items() if k != "uid"}
        )
    return batch


def write_statements(
    driver: neo4j.Driver, statements: Sequence[dict[str, Any]], *, database: str | None = None
) -> WriteStats:
    return write_batch(driver, statement_batch(statements), database=database)


STATEMENTS_FOR = f"""
MATCH (s:`{_ST}`) WHERE s.pairKey IN $pairs
RETURN properties(s) AS s ORDER BY s.confidence DESC, s.source LIMIT $limit
"""


def statements_for(
    driver: neo4j.Driver, pairs: Sequence[str], *, limit: int = 200, database: str | None = None
) -> list[dict[str, Any]]:
    if not pairs:
        return []
    rows = run_read(driver, STATEMENTS_FOR, {"pairs": list(pairs), "limit": limit}, database)
    return [dict(r["s"]) for r in rows]


def person_exists(driver: neo4j.Driver, person: str, *, database: str | None = None) -> bool:
    return bool(run_read(driver, PERSON_EXISTS, {"person": person}, database))
