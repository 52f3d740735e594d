"""Export of a patient's subgraph to RDF, typed by the medshadow ontology.

Nodes become ``https://w3id.org/medshadow/id/<url-quoted uid>`` IRIs typed with the ontology
class of each label, scalar properties become typed literals, relationships become object
property assertions. Only labels and relationship types of the ontology are exported.
neo4j is deliberately not imported: its temporal values are recognised by duck typing.
"""

from __future__ import annotations

import base64
import datetime as dt
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from urllib.parse import quote

import rdflib
from rdflib.namespace import OWL, RDF, RDFS, XSD
from rdflib.term import BNode, Literal, URIRef

from ontology.errors import OntologyError
from ontology.model import NAMESPACE, ONTOLOGY_PATH, Label, RelType

ID_NAMESPACE = "https://w3id.org/medshadow/id/"

MS = rdflib.Namespace(NAMESPACE)
MSID = rdflib.Namespace(ID_NAMESPACE)

_NUMERIC_WIDENING = frozenset({XSD.double, XSD.float, XSD.decimal})


@dataclass(frozen=True)
class GraphNode:
    """A node as read from Neo4j: its ``uid`` key, labels and properties.

    ``props`` is excluded from hashing (a dict is unhashable); equality still compares it.
    """

    uid: str
    labels: tuple[str, ...]
    props: Mapping[str, object] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class GraphRel:
    """A relationship as read from Neo4j: its type and the uids of its start and end nodes."""

    type: str
    start: str
    end: str


def node_iri(uid: str) -> URIRef:
    """The IRI of the node with key ``uid`` (quoted whole, so ``/`` and ``:`` cannot nest paths)."""
    return URIRef(ID_NAMESPACE + quote(uid, safe=""))


def load_ontology_graph(path: Path = ONTOLOGY_PATH) -> rdflib.Graph:
    """Parse the ontology Turtle into a fresh graph (callers may mutate it)."""
    try:
        return rdflib.Graph().parse(path, format="turtle")
    except (OSError, SyntaxError, ValueError) as exc:
        raise OntologyError(f"cannot read ontology {path}: {exc}") from exc


def ontology_terms() -> tuple[set[str], set[str]]:
    """(local names of the classes carrying ``:neo4jLabel``, all ``:neo4jType`` values).

    Drift check material: compare with :class:`Label` and :class:`RelType`.
    """
    graph = load_ontology_graph()
    classes = {
        _local_name(s)
        for s in graph.subjects(MS.neo4jLabel, None)
        if isinstance(s, URIRef) and (s, RDF.type, OWL.Class) in graph
    }
    types = {str(o) for o in graph.objects(None, MS.neo4jType)}
    return classes, types


def subgraph_to_graph(nodes: Iterable[GraphNode], rels: Iterable[GraphRel] = ()) -> rdflib.Graph:
    """Build the RDF graph of a subgraph.

    Raises :class:`OntologyError` for a label, relationship type or property name outside the
    ontology and for a value RDF cannot carry; :class:`ValueError` for inconsistent input (two
    different nodes with one uid, a ``uid`` property that disagrees with the node's key, a
    relationship whose end is not among ``nodes``).
    """
    vocab = _vocabulary()
    graph = rdflib.Graph()
    graph.bind("ms", MS)
    graph.bind("msid", MSID)
    seen: dict[str, GraphNode] = {}
    for node in nodes:
        previous = seen.get(node.uid)
        if previous is not None:
            # Path queries return a node once per path through it: identical repeats are fine.
            if previous != node:
                raise ValueError(f"two different nodes share uid {node.uid!r}")
            continue
        seen[node.uid] = node
        _add_node(graph, node, vocab)
    for rel in rels:
        try:
            predicate = URIRef(RelType(rel.type).iri)
        except ValueError:
            raise OntologyError(
                f"relationship type {rel.type!r} is not in the ontology (ontology.model.RelType)"
            ) from None
        for end in (rel.start, rel.end):
            if end not in seen:
                raise ValueError(
                    f"{rel.type} relationship refers to node {end!r}, not in the subgraph"
                )
        graph.add((node_iri(rel.start), predicate, node_iri(rel.end)))
    return graph


def subgraph_to_turtle(nodes: Iterable[GraphNode], rels: Iterable[GraphRel] = ()) -> str:
    """:func:`subgraph_to_graph` serialised as Turtle with the ``ms:`` and ``msid:`` prefixes."""
    return subgraph_to_graph(nodes, rels).serialize(format="turtle")


@dataclass(frozen=True)
class _Vocabulary:
    # Declared datatype property local name -> its base XSD datatype (None when no simple one).
    datatype_ranges: Mapping[str, URIRef | None]
    # Local names of every other ontology term: a node property must not pun one of them.
    reserved: frozenset[str]


@lru_cache(maxsize=1)
def _vocabulary() -> _Vocabulary:
    """What the exporter needs from the shipped ontology, parsed once per process."""
    graph = load_ontology_graph()
    ranges: dict[str, URIRef | None] = {}
    for prop in graph.subjects(RDF.type, OWL.DatatypeProperty):
        if isinstance(prop, URIRef) and str(prop).startswith(NAMESPACE):
            ranges[_local_name(prop)] = _base_datatype(graph, graph.value(prop, RDFS.range))
    reserved = (
        frozenset(
            _local_name(s)
            for s in graph.subjects()
            if isinstance(s, URIRef) and str(s).startswith(NAMESPACE)
        )
        - ranges.keys()
    )
    return _Vocabulary(datatype_ranges=ranges, reserved=reserved)


def _base_datatype(graph: rdflib.Graph, rng: object) -> URIRef | None:
    """``xsd:double`` for both ``xsd:double`` and a facet restriction of it; else None."""
    if isinstance(rng, BNode):
        rng = graph.value(rng, OWL.onDatatype)
    if isinstance(rng, URIRef) and str(rng).startswith(str(XSD)):
        return rng
    return None


def _local_name(iri: URIRef) -> str:
    return str(iri).removeprefix(NAMESPACE)


def _add_node(graph: rdflib.Graph, node: GraphNode, vocab: _Vocabulary) -> None:
    subject = node_iri(node.uid)
    if not node.labels:
        raise OntologyError(f"node {node.uid!r} has no label, so no ontology class")
    for label in node.labels:
        try:
            cls = URIRef(Label(label).iri)
        except ValueError:
            raise OntologyError(
                f"node {node.uid!r} has label {label!r}, which is not in the ontology "
                "(ontology.model.Label)"
            ) from None
        graph.add((subject, RDF.type, cls))
    # OWL 2 DL wants individuals declared; it also lets owlready2 and OWL tools list them.
    graph.add((subject, RDF.type, OWL.NamedIndividual))
    graph.add((subject, MS.uid, Literal(node.uid)))
    for key, value in node.props.items():
        if key == "uid":
            if value != node.uid:
                raise ValueError(f"node {node.uid!r} has a uid property of {value!r}")
            continue
        predicate, datatype = _datatype_property(key, node.uid, vocab)
        for literal in _literals(value, datatype, key, node.uid):
            graph.add((subject, predicate, literal))


def _datatype_property(key: str, uid: str, vocab: _Vocabulary) -> tuple[URIRef, URIRef | None]:
    """The predicate for property ``key`` and its declared base datatype, if any."""
    if key in vocab.datatype_ranges:
        return MS[key], vocab.datatype_ranges[key]
    if not key or key in vocab.reserved:
        # ms:about or ms:Patient as a literal-valued predicate would pun an object property or
        # a class, taking the export out of OWL 2 DL.
        raise OntologyError(
            f"property {key!r} of node {uid!r} would name an ontology term that is not a "
            "datatype property"
        )
    return URIRef(NAMESPACE + quote(key, safe="")), None


def _literals(value: object, datatype: URIRef | None, key: str, uid: str) -> list[Literal]:
    """Literals for one property value: none for null, one per element for a list."""
    if value is None:
        return []
    # neo4j.time.Duration is a tuple subclass: a value with iso_format() is one scalar.
    if isinstance(value, list | tuple) and not hasattr(value, "iso_format"):
        # Neo4j lists are flat and hold no nulls; skip nulls anyway rather than fail.
        return [_literal(item, datatype, key, uid) for item in value if item is not None]
    return [_literal(value, datatype, key, uid)]


def _literal(value: object, datatype: URIRef | None, key: str, uid: str) -> Literal:
    """One scalar as a typed literal. Strings stay simple literals (xsd:string in RDF 1.1)."""
    # Order matters: bool is an int, datetime is a date.
    if isinstance(value, str):
        return Literal(str(value))  # str() turns a StrEnum member (DomainKind.MIS) into "MIS"
    if isinstance(value, bool):
        return Literal(value, datatype=XSD.boolean)
    if isinstance(value, numbers.Integral):
        if datatype in _NUMERIC_WIDENING:
            # mappingConfidence 1 must not become an xsd:integer outside its xsd:double range.
            widened = Decimal(int(value)) if datatype == XSD.decimal else float(value)
            return Literal(widened, datatype=datatype)
        return Literal(int(value), datatype=XSD.integer)
    if isinstance(value, Decimal):
        return Literal(value, datatype=XSD.decimal)
    if isinstance(value, numbers.Real):
        return Literal(float(value), datatype=XSD.double)
    if isinstance(value, bytes | bytearray):
        return Literal(base64.b64encode(value).decode("ascii"), datatype=XSD.base64Binary)
    if isinstance(value, dt.timedelta):
        return Literal(value, datatype=XSD.duration)
    temporal = _temporal(value)
    if temporal is not None:
        return temporal
    raise OntologyError(
        f"property {key!r} of node {uid!r} holds a {type(value).__name__}, "
        "which has no RDF literal form"
    )


def _temporal(value: object) -> Literal | None:
    """Python and neo4j.time dates, times, datetimes and durations, by duck typing.

    The lexical form is kept as given (``normalize=False``): rdflib would otherwise round
    neo4j's nanoseconds to microseconds.
    """
    iso = getattr(value, "iso_format", None) or getattr(value, "isoformat", None)
    if not callable(iso):
        return None
    if hasattr(value, "year") and hasattr(value, "hour"):
        datatype = XSD.dateTime
    elif hasattr(value, "year"):
        datatype = XSD.date
    elif hasattr(value, "hour"):
        datatype = XSD.time
    elif hasattr(value, "months") and hasattr(value, "seconds"):
        datatype = XSD.duration  # neo4j.time.Duration
    else:
        return None
    return Literal(str(iso()), datatype=datatype, normalize=False)
