"""Concept embeddings in the graph: vector indexes, batched writes, k-nearest-neighbour reads.

Each embedding model has its own :class:`VectorSlot` on ``Concept`` nodes: a vector property
(``embMiniLM``, ``embE5``), a property holding the hash of the text the vector was computed
from (so re-embedding skips unchanged concepts), and a cosine vector index over the vector.
Property and index names come only from the closed :data:`SLOTS` table; every value travels
as a parameter.

Scores are Neo4j's cosine similarity, normalised to ``[0, 1]`` as ``(1 + cos) / 2``, always
computed exactly on the stored float32 vectors: the index (int8-quantised) only proposes
candidates, and selective system filters scan the system's vectors directly.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import neo4j

from graph.connection import run_read
from ontology.model import Label


@dataclass(frozen=True, slots=True)
class VectorSlot:
    """Where one embedding model's vectors live on Concept nodes."""

    model: str
    property: str
    hash_property: str
    index: str
    dimensions: int = 384
    similarity: str = "cosine"


#: One slot per embedding model key (``nlp.embeddings.MODELS``).
SLOTS: dict[str, VectorSlot] = {
    slot.model: slot
    for slot in (
        VectorSlot("minilm", "embMiniLM", "embMiniLMHash", "concept_embedding_minilm"),
        VectorSlot("e5", "embE5", "embE5Hash", "concept_embedding_e5"),
    )
}

#: Properties that hold embeddings and their bookkeeping: not part of a concept's meaning, so
#: exports (RDF) and content views leave them out.
VECTOR_PROPERTIES: frozenset[str] = frozenset(
    name for slot in SLOTS.values() for name in (slot.property, slot.hash_property)
)


def vector_slot(model: str) -> VectorSlot:
    try:
        return SLOTS[model]
    except KeyError:
        raise ValueError(f"no vector slot for model {model!r}; known: {', '.join(SLOTS)}") from None


def vector_schema_statements() -> list[str]:
    """The vector indexes (one per slot) and the index the system filter reads by."""
    concept = Label.CONCEPT.value
    statements = [
        f"CREATE INDEX concept_system IF NOT EXISTS FOR (n:`{concept}`) ON (n.system)",
    ]
    for slot in SLOTS.values():
        statements.append(
            f"CREATE VECTOR INDEX {slot.index} IF NOT EXISTS "
            f"FOR (n:`{concept}`) ON (n.{slot.property}) "
            "OPTIONS {indexConfig: {"
            f"`vector.dimensions`: {int(slot.dimensions)}, "
            f"`vector.similarity_function`: '{slot.similarity}'"
            "}}"
        )
    return statements


def ensure_vector_indexes(driver: neo4j.Driver, *, database: str | None = None) -> None:
    """Create the vector indexes if missing (a no-op otherwise) and wait until they are online."""
    for statement in vector_schema_statements():
        driver.execute_query(statement, database_=database)
    driver.execute_query("CALL db.awaitIndexes(300)", database_=database)


# --------------------------------------------------------------------------- writes

CONCEPT_TEXTS = """
MATCH (c:Concept)
WHERE $system IS NULL OR c.system = $system
RETURN c.uid AS uid, c.display AS text, c[$hashProperty] AS hash
ORDER BY c.uid
"""

#: ``db.create.setNodeVectorProperty`` stores a float32 array (half the size of a float list)
#: and checks that the value is a valid vector.
SET_VECTORS = """
UNWIND $rows AS row
MATCH (c:Concept {uid: row.uid})
CALL db.create.setNodeVectorProperty(c, $property, row.vector)
SET c += row.props
RETURN count(c) AS written
"""

#: Setting a property to null removes it: the map names the slot's two properties.
CLEAR_VECTORS = """
UNWIND $uids AS uid
MATCH (c:Concept {uid: uid})
SET c += $nulls
RETURN count(c) AS cleared
"""


@dataclass(frozen=True, slots=True)
class ConceptText:
    """A concept's embeddable text and the hash of what its stored vector was made from."""

    uid: str
    text: str | None
    stored_hash: str | None


@dataclass(frozen=True, slots=True)
class VectorRow:
    uid: str
    vector: Sequence[float]
    text_hash: str


def concept_texts(
    driver: neo4j.Driver,
    slot: VectorSlot,
    *,
    system: str | None = None,
    database: str | None = None,
) -> list[ConceptText]:
    """Every concept (of one code system, or all) with its display and the slot's text hash."""
    records, _, _ = driver.execute_query(
        CONCEPT_TEXTS,
        {"system": system, "hashProperty": slot.hash_property},
        routing_=neo4j.RoutingControl.READ,
        database_=database,
    )
    return [ConceptText(r["uid"], r["text"], r["hash"]) for r in records]


def write_vectors(
    driver: neo4j.Driver,
    slot: VectorSlot,
    rows: Sequence[VectorRow],
    *,
    database: str | None = None,
) -> int:
    """Store vectors and their text hashes in one transaction; returns how many concepts
    matched (a concept deleted meanwhile is not recreated)."""
    if not rows:
        return 0
    for row in rows:
        if len(row.vector) != slot.dimensions:
            raise ValueError(
                f"vector for {row.uid!r} has {len(row.vector)} dimensions, "
                f"slot {slot.property} takes {slot.dimensions}"
            )
    params = {
        "property": slot.property,
        "rows": [
            {
                "uid": r.uid,
                "vector": [float(x) for x in r.vector],
                "props": {slot.hash_property: r.text_hash},
            }
            for r in rows
        ],
    }
    records, _, _ = driver.execute_query(SET_VECTORS, params, database_=database)
    return int(records[0]["written"]) if records else 0


def clear_vectors(
    driver: neo4j.Driver,
    slot: VectorSlot,
    uids: Sequence[str],
    *,
    database: str | None = None,
) -> int:
    """Remove the slot's vector and hash from these concepts (their text went away)."""
    if not uids:
        return 0
    records, _, _ = driver.execute_query(
        CLEAR_VECTORS,
        {"uids": list(uids), "nulls": {slot.property: None, slot.hash_property: None}},
        database_=database,
    )
    return int(records[0]["cleared"]) if records else 0


# --------------------------------------------------------------------------- reads


@dataclass(frozen=True, slots=True)
class VectorHit:
    uid: str
    system: str | None
    code: str | None
    display: str | None
    score: float


def _property(slot: VectorSlot) -> str:
    """The slot's vector property, checked to be a plain identifier before it enters Cypher."""
    if not _IDENTIFIER.fullmatch(slot.property):
        raise ValueError(f"vector property {slot.property!r} is not a plain identifier")
    return slot.property


def index_query(slot: VectorSlot) -> str:
    """Ask the index for ``$fetch`` neighbours, keep those of ``$system`` (when given) and
    re-score them exactly on the stored float32 vectors: the index is approximate (HNSW over
    int8-quantised vectors, Neo4j's default) and cannot filter. ``fetched`` tells whether the
    index ran out. (The property is written out: a static read is faster than ``c[$key]``.)"""
    prop = _property(slot)
    return f"""
CALL db.index.vector.queryNodes($index, $fetch, $vector) YIELD node
WITH collect(node) AS nodes
RETURN size(nodes) AS fetched,
       [n IN nodes WHERE $system IS NULL OR n.system = $system |
        {{uid: n.uid, system: n.system, code: n.code, display: n.display,
         score: vector.similarity.cosine(n.{prop}, $vector)}}] AS rows
"""


def exact_query(slot: VectorSlot) -> str:
    """Every vector of one code system, by the ``concept_system`` index, scored exactly: for
    small systems faster than oversampling the global index, and never approximate."""
    prop = _property(slot)
    return f"""
MATCH (c:Concept {{system: $system}})
WHERE c.{prop} IS NOT NULL
WITH c, vector.similarity.cosine(c.{prop}, $vector) AS score
ORDER BY score DESC, c.uid
LIMIT $k
RETURN c.uid AS uid, c.system AS system, c.code AS code, c.display AS display, score
"""


def count_query(slot: VectorSlot) -> str:
    """How many vectors a system has, counting no further than ``$limit`` (the answer only
    decides between the exact scan and the index)."""
    prop = _property(slot)
    return f"""
MATCH (c:Concept {{system: $system}})
WHERE c.{prop} IS NOT NULL
WITH c LIMIT $limit
RETURN count(c) AS n
"""


READ_VECTORS = """
MATCH (c:Concept)
WHERE c[$property] IS NOT NULL AND ($system IS NULL OR c.system = $system)
RETURN c.uid AS uid, c.system AS system, c[$property] AS vector
ORDER BY c.uid
"""

#: Up to this many vectors in the filtered system, scan them exactly instead of asking the
#: index: measured on the 2-core VM, ~15 µs per vector in Cypher, so 1,000 cost about what one
#: oversampled index query does.
EXACT_SCAN_LIMIT = 1000
OVERSAMPLE = 10
_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def nearest(
    driver: neo4j.Driver,
    slot: VectorSlot,
    vector: Sequence[float],
    *,
    k: int = 10,
    system: str | None = None,
    exact_scan_limit: int = EXACT_SCAN_LIMIT,
    database: str | None = None,
) -> list[VectorHit]:
    """The ``k`` concepts whose vectors are closest to ``vector``, best first, optionally only
    those of one code system.

    Without a filter this is one vector-index query. With one, a system of at most
    ``exact_scan_limit`` vectors is scanned exactly; a larger one asks the index for
    ``OVERSAMPLE``× more neighbours, growing the request until ``k`` of the system are found
    or the index has nothing more to give.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if len(vector) != slot.dimensions:
        raise ValueError(f"query vector has {len(vector)} dimensions, expected {slot.dimensions}")
    query_vector = [float(x) for x in vector]
    if system is not None:
        count = run_read(
            driver, count_query(slot), {"system": system, "limit": exact_scan_limit + 1}, database
        )[0]["n"]
        if count <= exact_scan_limit:
            records = run_read(
                driver,
                exact_query(slot),
                {"system": system, "vector": query_vector, "k": k},
                database,
            )
            return [_hit(r) for r in records]
    # a little headroom even unfiltered: the quantised index may order near-ties wrongly
    fetch = 2 * k if system is None else k * OVERSAMPLE
    while True:
        record = run_read(
            driver,
            index_query(slot),
            {"index": slot.index, "fetch": fetch, "vector": query_vector, "system": system},
            database,
        )[0]
        hits = sorted((_hit(r) for r in record["rows"]), key=lambda h: (-h.score, h.uid))
        if len(hits) >= k or record["fetched"] < fetch:
            return hits[:k]
        fetch *= 4


def read_vectors(
    driver: neo4j.Driver,
    slot: VectorSlot,
    *,
    system: str | None = None,
    database: str | None = None,
) -> Iterator[tuple[str, str | None, list[float]]]:
    """``(uid, system, vector)`` of every concept with a vector in the slot (benchmarks,
    exports of an embedding space)."""
    for r in run_read(
        driver, READ_VECTORS, {"property": slot.property, "system": system}, database
    ):
        yield r["uid"], r["system"], list(r["vector"])


def _hit(r: Mapping[str, Any]) -> VectorHit:
    return VectorHit(r["uid"], r["system"], r["code"], r["display"], float(r["score"]))
