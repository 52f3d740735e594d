"""Export of a patient's subgraph to RDF: exact triples after a Turtle round trip."""

from __future__ import annotations

import datetime as dt

import neo4j.time
import pytest
from rdflib import Graph, Literal, URIRef
from rdflib.namespace import OWL, RDF, XSD

from ontology.errors import OntologyError
from ontology.model import DomainKind, Label, RelType
from ontology.rdf import GraphNode, GraphRel, node_iri, subgraph_to_graph, subgraph_to_turtle

MS = "https://w3id.org/medshadow/ontology#"
ID = "https://w3id.org/medshadow/id/"

PERSON = "person:7f3a"
MIS = "domain:city-hospital-mis"
PORTAL = "domain:patient-portal"
RECORD_MIS = "patient:city-hospital-mis/MRN 0042"  # '/', ':' and ' ' must be quoted away
RECORD_PORTAL = "patient:patient-portal/anna.k"
CONDITION = "condition:city-hospital-mis/c-17"
CONCEPT = "concept:sct/38341003"


def ms(name: str) -> URIRef:
    return URIRef(MS + name)


def iri(quoted: str) -> URIRef:
    return URIRef(ID + quoted)


def subgraph() -> tuple[list[GraphNode], list[GraphRel]]:
    """One person known to a hospital MIS and a patient portal, with one coded diagnosis."""
    nodes = [
        GraphNode(
            PERSON,
            (Label.PERSON,),
            {
                "uid": PERSON,
                "name": "Anna Karenina",
                "gender": "female",
                "birthDate": dt.date(1984, 5, 17),
                "nationalId": "123-456-789 00",
            },
        ),
        GraphNode(MIS, (Label.DOMAIN,), {"name": "City Hospital MIS", "kind": DomainKind.MIS}),
        GraphNode(PORTAL, (Label.DOMAIN,), {"name": "Patient portal", "kind": "PORTAL"}),
        GraphNode(
            RECORD_MIS,
            (Label.PATIENT,),
            {
                "sourceDomain": MIS,
                "sourceRecordId": "MRN 0042",
                "mappingMethod": "deterministic:nationalId",
                "mappingConfidence": 1,  # an int, widened to the declared xsd:double
            },
        ),
        GraphNode(
            RECORD_PORTAL,
            (Label.PATIENT,),
            {
                "sourceDomain": PORTAL,
                "sourceRecordId": "anna.k",
                "mappingMethod": "probabilistic",
                "mappingConfidence": 0.75,
            },
        ),
        GraphNode(
            CONDITION,
            (Label.CONDITION,),
            {
                "sourceDomain": MIS,
                "sourceRecordId": "c-17",
                "status": "active",
                "date": dt.datetime(2023, 11, 2, 9, 15, tzinfo=dt.UTC),
                "severity": 2,  # not declared by the ontology: ms:severity all the same
                "verified": True,
                "tags": ["chronic", "cardiovascular"],
                "note": None,  # absent, not exported
            },
        ),
        GraphNode(
            CONCEPT,
            (Label.CONCEPT,),
            {
                "system": "http://snomed.info/sct",
                "code": "38341003",
                "display": "Hypertensive disorder",
            },
        ),
    ]
    rels = [
        GraphRel(RelType.RECORD_OF, RECORD_MIS, PERSON),
        GraphRel(RelType.RECORD_OF, RECORD_PORTAL, PERSON),
        GraphRel(RelType.IN_DOMAIN, RECORD_MIS, MIS),
        GraphRel(RelType.IN_DOMAIN, RECORD_PORTAL, PORTAL),
        GraphRel(RelType.ABOUT, CONDITION, RECORD_MIS),
        GraphRel(RelType.CODED_AS, CONDITION, CONCEPT),
    ]
    return nodes, rels


def test_subgraph_round_trips_through_turtle_to_the_exact_triples() -> None:
    person = iri("person%3A7f3a")
    mis = iri("domain%3Acity-hospital-mis")
    portal = iri("domain%3Apatient-portal")
    record_mis = iri("patient%3Acity-hospital-mis%2FMRN%200042")
    record_portal = iri("patient%3Apatient-portal%2Fanna.k")
    condition = iri("condition%3Acity-hospital-mis%2Fc-17")
    concept = iri("concept%3Asct%2F38341003")
    expected = {
        (person, RDF.type, ms("Person")),
        (person, RDF.type, OWL.NamedIndividual),
        (person, ms("uid"), Literal(PERSON)),
        (person, ms("name"), Literal("Anna Karenina")),
        (person, ms("gender"), Literal("female")),
        (person, ms("birthDate"), Literal("1984-05-17", datatype=XSD.date)),
        (person, ms("nationalId"), Literal("123-456-789 00")),
        (mis, RDF.type, ms("Domain")),
        (mis, RDF.type, OWL.NamedIndividual),
        (mis, ms("uid"), Literal(MIS)),
        (mis, ms("name"), Literal("City Hospital MIS")),
        (mis, ms("kind"), Literal("MIS")),
        (portal, RDF.type, ms("Domain")),
        (portal, RDF.type, OWL.NamedIndividual),
        (portal, ms("uid"), Literal(PORTAL)),
        (portal, ms("name"), Literal("Patient portal")),
        (portal, ms("kind"), Literal("PORTAL")),
        (record_mis, RDF.type, ms("Patient")),
        (record_mis, RDF.type, OWL.NamedIndividual),
        (record_mis, ms("uid"), Literal(RECORD_MIS)),
        (record_mis, ms("sourceDomain"), Literal(MIS)),
        (record_mis, ms("sourceRecordId"), Literal("MRN 0042")),
        (record_mis, ms("mappingMethod"), Literal("deterministic:nationalId")),
        (record_mis, ms("mappingConfidence"), Literal("1.0", datatype=XSD.double)),
        (record_mis, ms("recordOf"), person),
        (record_mis, ms("inDomain"), mis),
        (record_portal, RDF.type, ms("Patient")),
        (record_portal, RDF.type, OWL.NamedIndividual),
        (record_portal, ms("uid"), Literal(RECORD_PORTAL)),
        (record_portal, ms("sourceDomain"), Literal(PORTAL)),
        (record_portal, ms("sourceRecordId"), Literal("anna.k")),
        (record_portal, ms("mappingMethod"), Literal("probabilistic")),
        (record_portal, ms("mappingConfidence"), Literal("0.75", datatype=XSD.double)),
        (record_portal, ms("recordOf"), person),
        (record_portal, ms("inDomain"), portal),
        (condition, RDF.type, ms("Condition")),
        (condition, RDF.type, OWL.NamedIndividual),
        (condition, ms("uid"), Literal(CONDITION)),
        (condition, ms("sourceDomain"), Literal(MIS)),
        (condition, ms("sourceRecordId"), Literal("c-17")),
        (condition, ms("status"), Literal("active")),
        (condition, ms("date"), Literal("2023-11-02T09:15:00+00:00", datatype=XSD.dateTime)),
        (condition, ms("severity"), Literal("2", datatype=XSD.integer)),
        (condition, ms("verified"), Literal("true", datatype=XSD.boolean)),
        (condition, ms("tags"), Literal("chronic")),
        (condition, ms("tags"), Literal("cardiovascular")),
        (condition, ms("about"), record_mis),
        (condition, ms("codedAs"), concept),
        (concept, RDF.type, ms("Concept")),
        (concept, RDF.type, OWL.NamedIndividual),
        (concept, ms("uid"), Literal(CONCEPT)),
        (concept, ms("system"), Literal("http://snomed.info/sct")),
        (concept, ms("code"), Literal("38341003")),
        (concept, ms("display"), Literal("Hypertensive disorder")),
    }

    turtle = subgraph_to_turtle(*subgraph())
    parsed = Graph().parse(data=turtle, format="turtle")

    assert set(parsed) == expected
    assert f"@prefix ms: <{MS}> ." in turtle
    assert f"@prefix msid: <{ID}> ." in turtle


def test_literal_datatypes_survive_the_round_trip() -> None:
    parsed = Graph().parse(data=subgraph_to_turtle(*subgraph()), format="turtle")
    condition = node_iri(CONDITION)

    def datatype_of(subject: URIRef, prop: str) -> URIRef | None:
        value = parsed.value(subject, ms(prop))
        assert isinstance(value, Literal)
        return value.datatype

    assert datatype_of(node_iri(PERSON), "birthDate") == XSD.date
    assert datatype_of(condition, "date") == XSD.dateTime
    assert datatype_of(condition, "severity") == XSD.integer
    assert datatype_of(condition, "verified") == XSD.boolean
    assert datatype_of(node_iri(RECORD_PORTAL), "mappingConfidence") == XSD.double
    assert datatype_of(node_iri(RECORD_MIS), "mappingConfidence") == XSD.double
    assert datatype_of(condition, "status") is None  # a simple literal: xsd:string in RDF 1.1


def test_neo4j_driver_temporal_values_are_duck_typed_and_keep_nanoseconds() -> None:
    node = GraphNode(
        "observation:1",
        (Label.OBSERVATION,),
        {
            "date": neo4j.time.DateTime(2024, 3, 1, 10, 30, 15, 123456789, tzinfo=dt.UTC),
            "day": neo4j.time.Date(2024, 3, 1),
            "at": neo4j.time.Time(7, 45, 0),
            "span": neo4j.time.Duration(months=2, days=3, seconds=5),
            "local": dt.datetime(2024, 3, 1, 10, 30),
        },
    )
    graph = subgraph_to_graph([node])
    subject = node_iri("observation:1")

    def literal(prop: str) -> Literal:
        value = graph.value(subject, ms(prop))
        assert isinstance(value, Literal)
        return value

    assert literal("date") == Literal(
        "2024-03-01T10:30:15.123456789+00:00", datatype=XSD.dateTime, normalize=False
    )
    assert literal("day") == Literal("2024-03-01", datatype=XSD.date)
    assert literal("at").datatype == XSD.time
    assert literal("span") == Literal("P2M3DT5S", datatype=XSD.duration, normalize=False)
    assert literal("local") == Literal("2024-03-01T10:30:00", datatype=XSD.dateTime)
    assert "2024-03-01T10:30:15.123456789+00:00" in subgraph_to_turtle([node])


def test_node_iri_quotes_the_whole_uid() -> None:
    assert node_iri("patient:mis/42 a") == URIRef(ID + "patient%3Amis%2F42%20a")


def test_unknown_label_raises() -> None:
    with pytest.raises(OntologyError, match="'Spaceship'"):
        subgraph_to_graph([GraphNode("x:1", (Label.PERSON, "Spaceship"), {})])


def test_node_without_label_raises() -> None:
    with pytest.raises(OntologyError, match="no label"):
        subgraph_to_graph([GraphNode("x:1", (), {})])


def test_unknown_relationship_type_raises() -> None:
    nodes = [GraphNode("a", (Label.CONCEPT,), {}), GraphNode("b", (Label.CONCEPT,), {})]
    with pytest.raises(OntologyError, match="'SIMILAR_TO'"):
        subgraph_to_graph(nodes, [GraphRel("SIMILAR_TO", "a", "b")])


def test_relationship_type_must_be_the_neo4j_spelling() -> None:
    nodes = [GraphNode("a", (Label.CONCEPT,), {}), GraphNode("b", (Label.CONCEPT,), {})]
    with pytest.raises(OntologyError):
        subgraph_to_graph(nodes, [GraphRel("isA", "a", "b")])


def test_property_naming_an_object_property_or_class_raises() -> None:
    for key in ("about", "Patient", "neo4jLabel"):
        with pytest.raises(OntologyError, match=repr(key)):
            subgraph_to_graph([GraphNode("c", (Label.CONDITION,), {key: "x"})])


def test_value_without_literal_form_raises() -> None:
    with pytest.raises(OntologyError, match="dict"):
        subgraph_to_graph([GraphNode("c", (Label.CONDITION,), {"meta": {"a": 1}})])


def test_relationship_to_a_node_outside_the_subgraph_raises() -> None:
    with pytest.raises(ValueError, match="'person:missing'"):
        subgraph_to_graph(
            [GraphNode("p", (Label.PATIENT,), {})],
            [GraphRel(RelType.RECORD_OF, "p", "person:missing")],
        )


def test_repeated_node_is_exported_once_but_a_conflicting_one_raises() -> None:
    node = GraphNode("p", (Label.PERSON,), {"name": "A"})
    assert len(subgraph_to_graph([node, GraphNode("p", (Label.PERSON,), {"name": "A"})])) == 4
    with pytest.raises(ValueError, match="share uid"):
        subgraph_to_graph([node, GraphNode("p", (Label.PERSON,), {"name": "B"})])


def test_uid_property_must_match_the_node_key() -> None:
    with pytest.raises(ValueError, match="uid property"):
        subgraph_to_graph([GraphNode("p", (Label.PERSON,), {"uid": "q"})])
