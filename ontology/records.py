"""Typed rows that flow from a parser to the graph writer (phase one -> phase two of a load).

A parser produces a :class:`GraphBatch` you can inspect before anything touches Neo4j; the
writer turns it into batched ``UNWIND ... MERGE`` statements. Labels and relationship types are
the ontology's closed enums, so nothing the ontology does not define can be written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ontology.model import Label, RelType

#: Values Neo4j stores as properties: scalars, temporal values and homogeneous lists of them.
PropValue = Any


@dataclass(frozen=True, slots=True)
class NodeRow:
    label: Label
    uid: str
    props: Mapping[str, PropValue]


@dataclass(frozen=True, slots=True)
class RelRow:
    type: RelType
    start_label: Label
    start: str
    end_label: Label
    end: str
    props: Mapping[str, PropValue] = field(default_factory=dict)


@dataclass(slots=True)
class GraphBatch:
    """Nodes keyed by (label, uid) so repeats (a Concept used 500 times) are written once."""

    nodes: dict[tuple[Label, str], NodeRow] = field(default_factory=dict)
    rels: dict[tuple[RelType, str, str], RelRow] = field(default_factory=dict)

    def node(self, label: Label, uid: str, props: Mapping[str, PropValue]) -> None:
        key = (label, uid)
        clean = {k: v for k, v in props.items() if v is not None and v != []}
        old = self.nodes.get(key)
        if old is not None:
            clean = {**old.props, **clean}
        self.nodes[key] = NodeRow(label, uid, clean)

    def rel(
        self,
        rel_type: RelType,
        start: tuple[Label, str],
        end: tuple[Label, str],
        props: Mapping[str, PropValue] | None = None,
    ) -> None:
        row = RelRow(rel_type, start[0], start[1], end[0], end[1], dict(props or {}))
        self.rels[(rel_type, start[1], end[1])] = row

    def extend(self, other: GraphBatch) -> None:
        for row in other.nodes.values():
            self.node(row.label, row.uid, row.props)
        self.rels.update(other.rels)

    def __len__(self) -> int:
        return len(self.nodes) + len(self.rels)

    def node_rows(self) -> Iterable[NodeRow]:
        return self.nodes.values()

    def rel_rows(self) -> Iterable[RelRow]:
        return self.rels.values()
