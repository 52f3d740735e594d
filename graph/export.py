"""Read one patient's subgraph for RDF export."""

from __future__ import annotations

import neo4j

from graph.vectors import VECTOR_PROPERTIES
from ontology.rdf import GraphNode, GraphRel

PATIENT_SUBGRAPH = """
MATCH (per:Person {uid: $uid})
OPTIONAL MATCH (per)<-[:RECORD_OF]-(r:Patient)
OPTIONAL MATCH (r)<-[:ABOUT]-(f)
WITH per, collect(DISTINCT r) + collect(DISTINCT f) AS core
UNWIND [per] + core AS n
OPTIONAL MATCH (n)-[rel]->(m)
RETURN n.uid AS s, labels(n) AS sl, properties(n) AS sp,
       type(rel) AS t, m.uid AS e, labels(m) AS el, properties(m) AS ep
"""


def patient_subgraph(
    driver: neo4j.Driver, person_uid: str, *, database: str | None = None
) -> tuple[list[GraphNode], list[GraphRel]]:
    """The person, their domain records, every fact about them and what those point at."""
    records, _, _ = driver.execute_query(
        PATIENT_SUBGRAPH,
        {"uid": person_uid},
        routing_=neo4j.RoutingControl.READ,
        database_=database,
    )
    nodes: dict[str, GraphNode] = {}
    rels: set[GraphRel] = set()
    for rec in records:
        nodes.setdefault(rec["s"], GraphNode(rec["s"], tuple(rec["sl"]), _props(rec["sp"])))
        if rec["t"] is not None:
            nodes.setdefault(rec["e"], GraphNode(rec["e"], tuple(rec["el"]), _props(rec["ep"])))
            rels.add(GraphRel(rec["t"], rec["s"], rec["e"]))
    return list(nodes.values()), sorted(rels, key=lambda r: (r.type, r.start, r.end))


def _props(props: dict[str, object]) -> dict[str, object]:
    """A node's properties without concept embeddings (384 floats each, not facts)."""
    return {k: v for k, v in props.items() if k not in VECTOR_PROPERTIES}
