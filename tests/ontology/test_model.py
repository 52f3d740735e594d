"""The enums of ontology/model.py and the OWL file must describe the same vocabulary."""

from __future__ import annotations

import pytest
from rdflib import Graph, Literal, URIRef
from rdflib.collection import Collection
from rdflib.namespace import OWL, RDF, RDFS, XSD
from rdflib.term import Node

from ontology.model import NAMESPACE, DomainKind, Label, RelType
from ontology.rdf import MS, load_ontology_graph, ontology_terms

ONTOLOGY_IRI = URIRef("https://w3id.org/medshadow/ontology")

DATATYPE_PROPERTIES = {
    "uid",
    "sourceDomain",
    "sourceRecordId",
    "mappingMethod",
    "mappingConfidence",
    "system",
    "code",
    "display",
    "version",
    "name",
    "kind",
    "date",
    "status",
    "value",
    "unit",
    "text",
    "gender",
    "birthDate",
    "nationalId",
}


@pytest.fixture(scope="module")
def onto() -> Graph:
    return load_ontology_graph()


def _list(graph: Graph, head: Node | None) -> list[Node]:
    """The items of the RDF list starting at ``head``."""
    assert head is not None
    return list(Collection(graph, head))


def _members(graph: Graph, node: Node) -> list[Node]:
    return _list(graph, graph.value(node, OWL.members))


def test_turtle_parses_into_a_versioned_licensed_ontology(onto: Graph) -> None:
    assert (ONTOLOGY_IRI, RDF.type, OWL.Ontology) in onto
    assert onto.value(ONTOLOGY_IRI, OWL.versionIRI) == URIRef(
        "https://w3id.org/medshadow/ontology/1.0.0"
    )
    assert onto.value(ONTOLOGY_IRI, OWL.versionInfo) == Literal("1.0.0")
    assert onto.value(ONTOLOGY_IRI, URIRef("http://purl.org/dc/terms/license")) == URIRef(
        "https://www.apache.org/licenses/LICENSE-2.0"
    )


@pytest.mark.parametrize("label", list(Label))
def test_every_label_is_a_class_annotated_with_it(onto: Graph, label: Label) -> None:
    iri = URIRef(label.iri)
    assert (iri, RDF.type, OWL.Class) in onto
    assert set(onto.objects(iri, MS.neo4jLabel)) == {Literal(label.value)}


@pytest.mark.parametrize("rel", list(RelType))
def test_every_rel_type_is_an_object_property_annotated_with_it(onto: Graph, rel: RelType) -> None:
    iri = URIRef(rel.iri)
    assert (iri, RDF.type, OWL.ObjectProperty) in onto
    assert set(onto.objects(iri, MS.neo4jType)) == {Literal(rel.value)}
    assert onto.value(iri, RDFS.domain) is not None
    assert onto.value(iri, RDFS.range) is not None


def test_no_annotated_term_is_missing_from_the_enums(onto: Graph) -> None:
    classes, types = ontology_terms()
    assert classes == {label.value for label in Label}
    assert types == {rel.value for rel in RelType}
    # Annotations must sit on the right kind of term, under the IRI the enum computes.
    for subject, value in onto.subject_objects(MS.neo4jLabel):
        assert subject == URIRef(Label(str(value)).iri)
        assert (subject, RDF.type, OWL.Class) in onto
    for subject, value in onto.subject_objects(MS.neo4jType):
        assert subject == URIRef(RelType(str(value)).iri)
    # A relationship type the enum does not know would be an unannotated object property.
    declared = {str(p) for p in onto.subjects(RDF.type, OWL.ObjectProperty)}
    assert declared == {rel.iri for rel in RelType}


def test_rel_type_iris_are_camel_case(onto: Graph) -> None:
    assert RelType.RECORD_OF.iri == NAMESPACE + "recordOf"
    assert RelType.SERVICE_PROVIDER.iri == NAMESPACE + "serviceProvider"
    assert RelType.IS_A.iri == NAMESPACE + "isA"


def test_about_links_clinical_facts_to_patient_records(onto: Graph) -> None:
    about = URIRef(RelType.ABOUT.iri)
    assert onto.value(about, RDFS.domain) == MS.ClinicalFact
    assert onto.value(about, RDFS.range) == MS.Patient
    record_of = URIRef(RelType.RECORD_OF.iri)
    assert onto.value(record_of, RDFS.domain) == MS.Patient
    assert onto.value(record_of, RDFS.range) == MS.Person


def test_every_domain_kind_is_a_named_individual_of_domain_kind(onto: Graph) -> None:
    expected = {URIRef(NAMESPACE + kind.value) for kind in DomainKind}
    for iri in expected:
        assert (iri, RDF.type, OWL.NamedIndividual) in onto
        assert (iri, RDF.type, MS.DomainKind) in onto
    assert set(onto.subjects(RDF.type, MS.DomainKind)) == expected
    all_different = list(onto.subjects(RDF.type, OWL.AllDifferent))
    assert len(all_different) == 1
    assert set(_members(onto, all_different[0])) == expected
    # The closed enumeration and the string range of :kind list the same kinds.
    one_of = onto.value(onto.value(MS.DomainKind, OWL.equivalentClass), OWL.oneOf)
    assert set(_list(onto, one_of)) == expected
    strings = onto.value(onto.value(MS.kind, RDFS.range), OWL.oneOf)
    assert set(_list(onto, strings)) == {Literal(k.value) for k in DomainKind}


def test_fact_and_identity_classes_are_pairwise_disjoint(onto: Graph) -> None:
    groups = [set(_members(onto, node)) for node in onto.subjects(RDF.type, OWL.AllDisjointClasses)]
    identities = {MS.Person, MS.Patient, MS.Organization, MS.Concept, MS.ClinicalFact}
    assert any(identities <= group for group in groups)
    facts = {URIRef(NAMESPACE + name) for name in ("Condition", "Observation", "Encounter")}
    assert any(facts <= group for group in groups)
    for fact in ("Condition", "MedicationRequest", "CarePlan"):
        assert (MS[fact], RDFS.subClassOf, MS.ClinicalFact) in onto
    for artifact in ("Alert", "RiskAssessment", "CareGap", "DataRequest"):
        assert (MS[artifact], RDFS.subClassOf, MS.ShadowArtifact) in onto


def test_graph_properties_are_declared_datatype_properties(onto: Graph) -> None:
    declared = {
        str(p).removeprefix(NAMESPACE) for p in onto.subjects(RDF.type, OWL.DatatypeProperty)
    }
    assert declared == DATATYPE_PROPERTIES
    assert onto.value(MS.uid, RDFS.range) == XSD.string


def test_every_term_has_a_label_and_a_comment(onto: Graph) -> None:
    terms = {ONTOLOGY_IRI} | {
        s for s in onto.subjects() if isinstance(s, URIRef) and str(s).startswith(NAMESPACE)
    }
    unlabelled = sorted(str(t) for t in terms if onto.value(t, RDFS.label) is None)
    uncommented = sorted(str(t) for t in terms if onto.value(t, RDFS.comment) is None)
    assert unlabelled == []
    assert uncommented == []
