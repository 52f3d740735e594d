"""Concept vectors in the real embedded Neo4j: incremental embedding, the vector index, the
system filter, and semantic search over the sample population's concepts."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator

import neo4j
import pytest

from app.pipeline import LoadReport
from graph.vectors import (
    SLOTS,
    VECTOR_PROPERTIES,
    nearest,
    read_vectors,
    vector_schema_statements,
)
from graph.writer import write_batch
from nlp.embeddings import E5Embedder, MiniLMEmbedder
from nlp.semantic import SemanticSearch, embed_concepts
from ontology.model import Label
from ontology.records import GraphBatch

pytestmark = pytest.mark.graph

SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
MI = f"{SNOMED}|22298006"  # Myocardial infarction (disorder), in the sample population

LOCAL_CODES = {
    "I21": "Acute myocardial infarction",
    "E11": "Type 2 diabetes mellitus",
    "J45": "Asthma",
    "I10": "Essential (primary) hypertension",
    "S82": "Fracture of lower leg, including ankle",
}


def _write_concepts(driver: neo4j.Driver, system: str, codes: dict[str, str]) -> None:
    batch = GraphBatch()
    for code, display in codes.items():
        batch.node(
            Label.CONCEPT, f"{system}|{code}", {"system": system, "code": code, "display": display}
        )
    write_batch(driver, batch)


@pytest.fixture
def local_system(driver: neo4j.Driver) -> Iterator[str]:
    """A small code system of our own (ICD-10-like names), removed afterwards."""
    system = f"urn:medshadow:test:semantic-{uuid.uuid4().hex[:8]}"
    _write_concepts(driver, system, LOCAL_CODES)
    yield system
    driver.execute_query("MATCH (c:Concept {system: $s}) DETACH DELETE c", s=system)


def _sample_concepts(driver: neo4j.Driver) -> set[str]:
    """The concepts the sample's facts use: other tests (terminology loads) may have embedded
    further SNOMED codes, so rankings are judged within these."""
    used, _, _ = driver.execute_query(
        "MATCH (c:Concept)<-[:CODED_AS]-() RETURN collect(DISTINCT c.uid) AS uids"
    )
    return set(used[0]["uids"])


@pytest.fixture(scope="module")
def sample_embedded(
    driver: neo4j.Driver, loaded_sample: LoadReport, minilm: MiniLMEmbedder, e5: E5Embedder
) -> None:
    """The sample population's SNOMED and LOINC concepts, embedded with both models."""
    for system in (SNOMED, LOINC):
        embed_concepts(driver, "minilm", system=system, embedder=minilm)
    embed_concepts(driver, "e5", system=SNOMED, embedder=e5)


def test_schema_has_one_cosine_vector_index_per_model(driver: neo4j.Driver) -> None:
    records, _, _ = driver.execute_query(
        "SHOW VECTOR INDEXES YIELD name, labelsOrTypes, properties, options, state "
        "RETURN name, labelsOrTypes, properties, options, state"
    )
    by_name = {r["name"]: r for r in records}
    for slot in SLOTS.values():
        index = by_name[slot.index]
        assert index["labelsOrTypes"] == ["Concept"]
        assert index["properties"] == [slot.property]
        config = index["options"]["indexConfig"]
        assert config["vector.dimensions"] == 384
        assert config["vector.similarity_function"].lower() == "cosine"
        assert index["state"] == "ONLINE"
    # IF NOT EXISTS: running the statements again is a no-op
    for statement in vector_schema_statements():
        driver.execute_query(statement)


def test_re_embedding_skips_unchanged_concepts(
    driver: neo4j.Driver, local_system: str, minilm: MiniLMEmbedder
) -> None:
    first = embed_concepts(driver, "minilm", system=local_system, embedder=minilm, batch_size=2)
    assert (first.concepts, first.embedded, first.unchanged) == (5, 5, 0)

    again = embed_concepts(driver, "minilm", system=local_system, embedder=minilm)
    assert (again.concepts, again.embedded, again.unchanged) == (5, 0, 5)

    # A loader renames one concept (the writer's content hash changes only `display`)...
    _write_concepts(driver, local_system, {"J45": "Bronchial asthma"})
    # ...and another concept arrives without a display.
    driver.execute_query(
        "CREATE (:Concept {uid: $uid, system: $s, code: 'R69'})",
        uid=f"{local_system}|R69",
        s=local_system,
    )
    changed = embed_concepts(driver, "minilm", system=local_system, embedder=minilm)
    assert (changed.concepts, changed.embedded, changed.unchanged) == (6, 1, 4)
    assert changed.without_text == 1
    assert changed.vanished == 0

    vectors = {uid: v for uid, _, v in read_vectors(driver, SLOTS["minilm"], system=local_system)}
    assert set(vectors) == {f"{local_system}|{c}" for c in LOCAL_CODES}
    (expected,) = minilm.embed(["Bronchial asthma"])
    stored = vectors[f"{local_system}|J45"]
    assert all(math.isclose(a, b, abs_tol=1e-5) for a, b in zip(stored, expected, strict=True))

    # Losing its text removes a concept's vector rather than keeping a stale one.
    driver.execute_query(
        "MATCH (c:Concept {uid: $uid}) REMOVE c.display", uid=f"{local_system}|S82"
    )
    cleared = embed_concepts(driver, "minilm", system=local_system, embedder=minilm)
    assert (cleared.embedded, cleared.cleared, cleared.without_text) == (0, 1, 2)
    assert len(list(read_vectors(driver, SLOTS["minilm"], system=local_system))) == 4


def test_vector_index_query_honours_the_system_filter(
    driver: neo4j.Driver, local_system: str, sample_embedded: None, minilm: MiniLMEmbedder
) -> None:
    embed_concepts(driver, "minilm", system=local_system, embedder=minilm)
    (query,) = minilm.embed(["heart attack"], query=True)
    slot = SLOTS["minilm"]

    local = nearest(driver, slot, query, k=3, system=local_system)
    assert [h.system for h in local] == [local_system] * 3
    assert local[0].uid == f"{local_system}|I21"
    assert local[0].display == "Acute myocardial infarction"

    # the same through the approximate index, oversampled and filtered (no exact scan)
    via_index = nearest(driver, slot, query, k=3, system=local_system, exact_scan_limit=0)
    assert [h.uid for h in via_index] == [h.uid for h in local]
    for a, b in zip(via_index, local, strict=True):
        assert math.isclose(a.score, b.score, abs_tol=1e-4)

    snomed = nearest(driver, slot, query, k=5, system=SNOMED, exact_scan_limit=0)
    assert len(snomed) == 5
    assert {h.system for h in snomed} == {SNOMED}

    everywhere = nearest(driver, slot, query, k=20)
    assert {h.system for h in everywhere} >= {SNOMED, local_system}
    scores = [h.score for h in everywhere]
    assert scores == sorted(scores, reverse=True)

    assert nearest(driver, slot, query, k=3, system="urn:no-such-system") == []
    with pytest.raises(ValueError, match="dimensions"):
        nearest(driver, slot, query[:100], k=3)


def test_index_agrees_with_brute_force_cosine(
    driver: neo4j.Driver, sample_embedded: None, minilm: MiniLMEmbedder
) -> None:
    slot = SLOTS["minilm"]
    vectors = list(read_vectors(driver, slot, system=SNOMED))
    assert len(vectors) > 50
    (query,) = minilm.embed(["chest pain from blocked coronary artery"], query=True)
    brute = sorted(
        ((sum(a * b for a, b in zip(v, query, strict=True)), uid) for uid, _, v in vectors),
        reverse=True,
    )
    hits = nearest(driver, slot, query, k=5, system=SNOMED, exact_scan_limit=0)
    assert hits[0].uid == brute[0][1]
    # Neo4j reports cosine similarity as (1 + cos) / 2
    assert math.isclose(hits[0].score, (1 + brute[0][0]) / 2, abs_tol=1e-4)


def test_heart_attack_finds_myocardial_infarction_among_sample_concepts(
    driver: neo4j.Driver, sample_embedded: None
) -> None:
    sample = _sample_concepts(driver)
    search = SemanticSearch(driver)
    hits = search.search("heart attack", k=50, system=SNOMED)
    assert {h.method for h in hits} == {"embedding:minilm"}
    assert all(h.system == SNOMED for h in hits)
    assert MI in [h.uid for h in hits if h.uid in sample][:3], hits

    # across every embedded system, too (SNOMED + LOINC sample concepts)
    everywhere = search.search("heart attack", k=50)
    assert MI in [h.uid for h in everywhere if h.uid in sample][:3]


def test_russian_query_finds_the_english_concept(
    driver: neo4j.Driver, sample_embedded: None
) -> None:
    sample = _sample_concepts(driver)
    search = SemanticSearch(driver)
    hits = [h for h in search.search("инфаркт миокарда", k=50, system=SNOMED) if h.uid in sample]
    assert {h.method for h in hits} == {"embedding:e5"}  # chosen for the Cyrillic text
    assert MI in [h.uid for h in hits[:3]], hits
    assert "myocardial infarction" in (hits[0].display or "").lower()


def test_search_many_batches_per_model(driver: neo4j.Driver, sample_embedded: None) -> None:
    search = SemanticSearch(driver)
    english, russian = search.search_many(["heart attack", "инфаркт миокарда"], k=5, system=SNOMED)
    assert english[0].method == "embedding:minilm"
    assert russian[0].method == "embedding:e5"
    forced = search.search("heart attack", k=50, system=SNOMED, model="e5")
    assert forced[0].method == "embedding:e5"
    assert MI in [h.uid for h in forced if h.uid in _sample_concepts(driver)][:5]


def test_rdf_export_leaves_embeddings_out(driver: neo4j.Driver, sample_embedded: None) -> None:
    from graph.export import patient_subgraph

    records, _, _ = driver.execute_query(
        "MATCH (p:Person)<-[:RECORD_OF]-(:Patient)<-[:ABOUT]-()-[:CODED_AS]->(c:Concept) "
        "WHERE c.embMiniLM IS NOT NULL RETURN p.uid AS uid LIMIT 1"
    )
    nodes, _ = patient_subgraph(driver, records[0]["uid"])
    concepts = [n for n in nodes if "Concept" in n.labels]
    assert concepts
    assert not any(VECTOR_PROPERTIES & set(n.props) for n in concepts)
