"""Phase two of a load: write a :class:`GraphBatch` with batched ``UNWIND ... MERGE``.

Labels and relationship types are interpolated only from the ontology's enums (the one place
Cypher is built from names); every value travels as a parameter. ``MERGE`` on the unique
``uid`` makes re-loading idempotent. Each node row carries a hash of its properties: a node
whose stored hash matches is left alone, so a re-load of unchanged data writes (almost)
nothing and the writer can say exactly which nodes a load created or changed — the change
feed's input. Relationships whose end is missing are counted as ``dangling`` rather than
silently dropped.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import neo4j
import orjson

from ontology.model import Label, RelType
from ontology.records import GraphBatch, NodeRow, RelRow


@dataclass(slots=True)
class WriteStats:
    nodes_created: Counter[str] = field(default_factory=Counter)
    nodes_written: Counter[str] = field(default_factory=Counter)
    #: Nodes created or whose properties changed (the rest matched their stored hash).
    nodes_changed: Counter[str] = field(default_factory=Counter)
    rels_created: Counter[str] = field(default_factory=Counter)
    rels_written: Counter[str] = field(default_factory=Counter)
    dangling: Counter[str] = field(default_factory=Counter)
    transactions: int = 0

    def add(self, other: WriteStats) -> None:
        self.nodes_created.update(other.nodes_created)
        self.nodes_written.update(other.nodes_written)
        self.nodes_changed.update(other.nodes_changed)
        self.rels_created.update(other.rels_created)
        self.rels_written.update(other.rels_written)
        self.dangling.update(other.dangling)
        self.transactions += other.transactions


def merge_nodes_query(label: Label) -> str:
    return (
        f"UNWIND $rows AS row MERGE (n:`{Label(label).value}` {{uid: row.uid}}) "
        "WITH n, row WHERE n.contentHash IS NULL OR n.contentHash <> row.hash "
        "SET n += row.props, n.contentHash = row.hash "
        "RETURN collect(n.uid) AS changed"
    )


def system_key(system: str) -> str:
    """A code system URI as one full-text token (``http://snomed.info/sct`` →
    ``http_snomed_info_sct``): the ``concept_lexicon`` index filters by system with it."""
    return _NON_WORD.sub("_", system.lower())


_NON_WORD = re.compile(r"[^a-z0-9]+")


def content_hash(props: Any) -> str:
    """A short digest of a node's properties (key order does not matter)."""
    raw = orjson.dumps(props, option=orjson.OPT_SORT_KEYS, default=str)
    return hashlib.blake2b(raw, digest_size=12).hexdigest()


def merge_rels_query(rel_type: RelType, start: Label, end: Label) -> str:
    return (
        "UNWIND $rows AS row "
        f"MATCH (a:`{Label(start).value}` {{uid: row.start}}) "
        f"MATCH (b:`{Label(end).value}` {{uid: row.end}}) "
        f"MERGE (a)-[r:`{RelType(rel_type).value}`]->(b) SET r += row.props "
        "RETURN count(r) AS matched"
    )


def write_batch(
    driver: neo4j.Driver,
    batch: GraphBatch,
    *,
    batch_size: int = 5000,
    database: str | None = None,
    progress: Callable[[int], None] | None = None,
    on_changed: Callable[[Label, list[str]], None] | None = None,
) -> WriteStats:
    """Write all nodes (grouped per label), then all relationships (per type and end labels).

    ``on_changed`` hears, per chunk, the uids of the nodes that were created or changed.
    """
    stats = WriteStats()
    by_label: dict[Label, list[NodeRow]] = defaultdict(list)
    for node in batch.node_rows():
        by_label[node.label].append(node)
    by_rel: dict[tuple[RelType, Label, Label], list[RelRow]] = defaultdict(list)
    for rel in batch.rel_rows():
        by_rel[(rel.type, rel.start_label, rel.end_label)].append(rel)

    with driver.session(database=database) as session:
        for label, nodes in by_label.items():
            query = merge_nodes_query(label)
            for chunk in _chunks(nodes, batch_size):
                rows = [_node_row(label, n) for n in chunk]
                changed, created = session.execute_write(_run_nodes, query, rows)
                stats.nodes_created[label.value] += created
                stats.nodes_written[label.value] += len(rows)
                stats.nodes_changed[label.value] += len(changed)
                if on_changed and changed:
                    on_changed(label, changed)
                stats.transactions += 1
                if progress:
                    progress(len(rows))
        for (rel_type, start, end), rels in by_rel.items():
            query = merge_rels_query(rel_type, start, end)
            for chunk in _chunks(rels, batch_size):
                rows = [{"start": r.start, "end": r.end, "props": dict(r.props)} for r in chunk]
                matched, created = session.execute_write(_run, query, rows)
                stats.rels_created[rel_type.value] += created
                stats.rels_written[rel_type.value] += matched
                if matched < len(rows):
                    stats.dangling[f"{rel_type.value} {start.value}->{end.value}"] += (
                        len(rows) - matched
                    )
                stats.transactions += 1
                if progress:
                    progress(len(rows))
    return stats


def _node_row(label: Label, node: NodeRow) -> dict[str, Any]:
    props = dict(node.props)
    if label is Label.CONCEPT and isinstance(props.get("system"), str):
        props["systemKey"] = system_key(props["system"])
    return {"uid": node.uid, "props": props, "hash": content_hash(props)}


def _run_nodes(
    tx: neo4j.ManagedTransaction, query: str, rows: list[dict[str, Any]]
) -> tuple[list[str], int]:
    result = tx.run(query, rows=rows)
    record = result.single()
    created = result.consume().counters.nodes_created
    return (list(record["changed"]) if record is not None else []), created


def _run(tx: neo4j.ManagedTransaction, query: str, rows: list[dict[str, Any]]) -> tuple[int, int]:
    result = tx.run(query, rows=rows)
    record = result.single()
    counters = result.consume().counters
    matched = int(record["matched"]) if record is not None else 0
    created = counters.nodes_created or counters.relationships_created
    return matched, created


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
