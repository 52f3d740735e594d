"""HermiT over the shipped ontology and over deliberately broken copies (real Java runs)."""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

import pytest

from ontology.check import check_consistency
from ontology.errors import OntologyError
from ontology.model import NAMESPACE, ONTOLOGY_PATH, DomainKind, Label, RelType
from ontology.rdf import GraphNode, GraphRel, load_ontology_graph, subgraph_to_turtle

# ClinicalFact, ShadowArtifact and DomainKind are classes without a Neo4j label.
ABSTRACT_CLASSES = 3


def _copy_with(tmp_path: Path, extra: str) -> Path:
    """The shipped ontology plus ``extra`` Turtle, which may use the ontology's prefixes."""
    path = tmp_path / "broken.ttl"
    path.write_text(ONTOLOGY_PATH.read_text(encoding="utf-8") + "\n" + extra, encoding="utf-8")
    return path


def test_shipped_ontology_is_consistent() -> None:
    report = check_consistency()
    assert report.consistent
    assert report.ok
    assert report.inconsistent_classes == ()
    assert report.error is None
    assert report.path == ONTOLOGY_PATH
    assert report.classes == len(Label) + ABSTRACT_CLASSES
    assert report.object_properties == len(RelType)
    assert report.datatype_properties == 19
    assert report.individuals == len(DomainKind)
    assert report.elapsed_seconds > 0


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where owlready2 writes the file it hands HermiT, to see that it is cleaned up.

    owlready2 itself leaves that file behind whenever HermiT fails.
    """
    directory = tmp_path / "scratch"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    return directory


def test_individual_both_person_and_concept_is_inconsistent(tmp_path: Path, scratch: Path) -> None:
    path = _copy_with(tmp_path, ":someone a owl:NamedIndividual , :Person , :Concept .\n")

    report = check_consistency(path)

    assert not report.consistent
    assert not report.ok
    assert report.error is not None
    assert "Inconsistent ontology" in report.error
    assert report.individuals == len(DomainKind) + 1
    assert list(scratch.iterdir()) == []


def test_unsatisfiable_class_is_listed(tmp_path: Path) -> None:
    path = _copy_with(tmp_path, ":Chimera a owl:Class ; rdfs:subClassOf :Person , :Concept .\n")
    report = check_consistency(path)
    # No individual, so still consistent, but no node could ever be a Chimera.
    assert report.consistent
    assert not report.ok
    assert report.inconsistent_classes == (NAMESPACE + "Chimera",)


def test_domain_kind_outside_the_enum_is_inconsistent(tmp_path: Path) -> None:
    path = _copy_with(tmp_path, ':d a owl:NamedIndividual , :Domain ; :kind "FAX_MACHINE" .\n')
    assert not check_consistency(path).consistent


def _export_with_ontology(tmp_path: Path, nodes: list[GraphNode], rels: list[GraphRel]) -> Path:
    merged = load_ontology_graph()
    merged.parse(data=subgraph_to_turtle(nodes, rels), format="turtle")
    path = tmp_path / "merged.ttl"
    path.write_text(merged.serialize(format="turtle"), encoding="utf-8")
    return path


def test_exported_subgraph_that_follows_the_model_is_consistent(
    tmp_path: Path, scratch: Path
) -> None:
    nodes = [
        GraphNode("person:1", (Label.PERSON,), {"birthDate": dt.date(1984, 5, 17)}),
        GraphNode("domain:mis", (Label.DOMAIN,), {"kind": DomainKind.MIS}),
        GraphNode("patient:mis/1", (Label.PATIENT,), {"mappingConfidence": 1}),
        GraphNode("condition:1", (Label.CONDITION,), {"date": dt.datetime(2023, 11, 2, 9, 15)}),
        GraphNode("concept:sct/1", (Label.CONCEPT,), {"system": "sct", "code": "1"}),
    ]
    rels = [
        GraphRel(RelType.RECORD_OF, "patient:mis/1", "person:1"),
        GraphRel(RelType.IN_DOMAIN, "patient:mis/1", "domain:mis"),
        GraphRel(RelType.ABOUT, "condition:1", "patient:mis/1"),
        GraphRel(RelType.CODED_AS, "condition:1", "concept:sct/1"),
    ]
    path = _export_with_ontology(tmp_path, nodes, rels)

    report = check_consistency(path, ignore_unsupported_datatypes=True)
    assert report.ok
    assert report.individuals == len(DomainKind) + len(nodes)
    # Strict by default: xsd:date (birthDate) is outside the OWL 2 datatype map HermiT knows.
    with pytest.raises(OntologyError, match="XMLSchema#date"):
        check_consistency(path)
    assert list(scratch.iterdir()) == []


def test_exported_subgraph_that_breaks_the_model_is_caught(tmp_path: Path, scratch: Path) -> None:
    # A Condition recorded ABOUT the master Person instead of a Patient record: about's range
    # makes the Person a Patient, and the two are disjoint.
    nodes = [
        GraphNode("person:1", (Label.PERSON,), {}),
        GraphNode("condition:1", (Label.CONDITION,), {"status": "active"}),
    ]
    rels = [GraphRel(RelType.ABOUT, "condition:1", "person:1")]
    path = _export_with_ontology(tmp_path, nodes, rels)
    assert not check_consistency(path, ignore_unsupported_datatypes=True).consistent
    assert list(scratch.iterdir()) == []


def test_missing_java_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a machine without java on PATH
    with pytest.raises(OntologyError, match="JDK 17"):
        check_consistency()


def test_malformed_turtle_is_an_ontology_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.ttl"
    path.write_text("this is not turtle .\n", encoding="utf-8")
    with pytest.raises(OntologyError, match="cannot read ontology"):
        check_consistency(path)
