"""ConceptMap documents: FHIR R4 ConceptMap JSON and SSSOM TSV, written, read and refused."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.conceptmap import ConceptMap

from terminology.conceptmap import (
    EQUIVALENCE_PREDICATES,
    EQUIVALENCES,
    PROVENANCE_EXTENSION,
    ConceptMapDoc,
    ConceptMapError,
    MapElement,
    from_fhir,
    from_sssom,
    read_concept_map,
    to_fhir,
    to_sssom,
    write_concept_map,
)
from terminology.model import ICD10, LOINC, SNOMED, TerminologyError

LOCAL_LAB = "urn:medshadow:local:org-12:lab"
R4_EQUIVALENCES = {
    "relatedto",
    "equivalent",
    "equal",
    "wider",
    "subsumes",
    "narrower",
    "specializes",
    "inexact",
    "unmatched",
    "disjoint",
}


def _lab_doc() -> ConceptMapDoc:
    """Every field and awkward value a published map can carry."""
    elements = (
        MapElement(
            "ГЛЮ-1",
            "Глюкоза крови (натощак)",
            "2339-0",
            "Glucose [Mass/volume] in Blood",
            "equivalent",
            comment='tab\there, newline\nthen "quotes", CRLF\r\nand a lone \r too',
            method="lexical+embedding:e5+rerank",
            confidence=0.93,
            reviewer="Анна Петрова",
            reviewed_at="2026-11-23T19:00:00.123456+03:00",
        ),
        # same source code, a second target: one FHIR element with two targets
        MapElement("ГЛЮ-1", "Глюкоза крови (натощак)", "2345-7", None, "narrower"),
        MapElement(
            "HB A1C|%",
            None,
            None,
            None,
            "unmatched",
            comment="нет кода в LOINC top-2000",
            method="manual",
            reviewer="orcid:0000-0002-1825-0097",
            reviewed_at="2026-11-23",
        ),
        MapElement("CHOL", "Холестерин", "2093-3", "Cholesterol", "wider", confidence=1.0),
        MapElement("HDL", "ЛПВП", "2085-9", None, "inexact", comment="# not a metadata line"),
        MapElement("K", "Калий", "2823-3", "Potassium", "equal", method="semapv:LexicalMatching"),
        MapElement("NA", None, "2951-2", None, "equivalent", confidence=0.0, reviewed_at="2026"),
        # the first source code again, not adjacent: stays a row of its own
        MapElement("ГЛЮ-1", "Глюкоза крови (натощак)", "41653-7", None, "inexact", comment="x"),
    )
    return ConceptMapDoc(
        name="org-12-lab-to-loinc",
        version="2",
        source_system=LOCAL_LAB,
        target_system=LOINC,
        elements=elements,
        title="Лаборатория клиники 12 → LOINC",
        publisher="Clinic 12 terminology team",
        date="2026-11-23T19:05:00+03:00",
    )


def _minimal_doc() -> ConceptMapDoc:
    return ConceptMapDoc(
        "dx",
        "1",
        "urn:medshadow:local:org-3:dx",
        SNOMED,
        (MapElement("I10", None, "38341003", None, "equivalent"),),
        status="draft",
        url="https://example.org/fhir/ConceptMap/dx",
    )


DOCS = [
    _lab_doc(),
    _minimal_doc(),
    ConceptMapDoc("empty", "7", ICD10, SNOMED, ()),
]


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.name)
def test_fhir_round_trip_is_exact(doc: ConceptMapDoc, tmp_path: Path) -> None:
    assert from_fhir(to_fhir(doc)) == doc
    path = tmp_path / f"{doc.name}.json"
    write_concept_map(doc, path)
    assert read_concept_map(path) == doc
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.name)
def test_sssom_round_trip_is_exact(doc: ConceptMapDoc, tmp_path: Path) -> None:
    assert from_sssom(to_sssom(doc)) == doc
    path = tmp_path / f"{doc.name}.sssom.tsv"
    write_concept_map(doc, path)
    assert read_concept_map(path) == doc
    write_concept_map(doc, path)  # overwriting is as atomic as writing
    assert read_concept_map(path) == doc
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_fhir_resource_follows_r4() -> None:
    doc = _lab_doc()
    resource = to_fhir(doc)
    model = ConceptMap.model_validate(resource)  # the R4B models of fhir.resources
    assert model.id == "org-12-lab-to-loinc"
    assert model.url == "urn:medshadow:conceptmap:org-12-lab-to-loinc"
    assert model.version == "2"
    assert model.sourceUri == LOCAL_LAB
    assert model.targetUri == LOINC
    # cmd-0: a name usable by code generators; the machine name stays in id and url
    assert model.name == "Org12LabToLoinc"
    assert re.fullmatch(r"[A-Z]([A-Za-z0-9_]){0,254}", model.name)
    assert model.group is not None
    assert len(model.group) == 1
    group = model.group[0]
    assert (group.source, group.target) == (LOCAL_LAB, LOINC)
    # adjacent rows of one source code share an element; the later repeat is its own
    assert [e.code for e in group.element] == [
        "ГЛЮ-1",
        "HB A1C|%",
        "CHOL",
        "HDL",
        "K",
        "NA",
        "ГЛЮ-1",
    ]
    assert [t.code for t in group.element[0].target or []] == ["2339-0", "2345-7"]
    # fhir.resources does not check the terminology bindings and invariants: check them here
    for element in group.element:
        for target in element.target or []:
            assert target.equivalence in R4_EQUIVALENCES
            # the code is required unless unmatched
            assert target.code is not None or target.equivalence == "unmatched"
            if target.equivalence in ("narrower", "inexact"):  # cmd-1: needs a comment
                assert target.comment
    unmatched = group.element[1].target[0]  # type: ignore[index]
    assert unmatched.equivalence == "unmatched"
    assert unmatched.code is None
    provenance = group.element[0].target[0].extension[0]  # type: ignore[index]
    assert provenance.url == PROVENANCE_EXTENSION
    values = {sub.url: sub for sub in provenance.extension or []}
    assert values["method"].valueString == "lexical+embedding:e5+rerank"
    confidence = values["confidence"].valueDecimal
    assert confidence is not None
    assert float(confidence) == 0.93
    assert values["reviewer"].valueString == "Анна Петрова"
    assert values["reviewedAt"].valueDateTime is not None
    # what fhir.resources serialises reads back to the same map
    again = json.loads(model.model_dump_json())
    assert from_fhir(again) == doc


def test_generated_comment_satisfies_cmd1_and_reads_back_as_none() -> None:
    doc = ConceptMapDoc(
        "g", "1", LOCAL_LAB, LOINC, (MapElement("A", None, "1-8", None, "narrower"),)
    )
    target = to_fhir(doc)["group"][0]["element"][0]["target"][0]
    assert target["comment"]
    assert from_fhir(to_fhir(doc)).elements[0].comment is None


def test_sssom_columns_predicates_and_prefixes() -> None:
    text = to_sssom(_lab_doc())
    meta = [line for line in text.splitlines() if line.startswith("#")]
    assert meta[0] == "#curie_map:"
    for key in (
        "mapping_set_id",
        "mapping_set_version",
        "mapping_set_title",
        "license",
        "subject_source",
        "object_source",
        "publication_date",
    ):
        assert any(line.startswith(f"#{key}:") for line in meta), key
    assert "#  LOCAL_ORG_12_LAB: 'urn:medshadow:local:org-12:lab:'" in meta
    assert "#  LOINC: https://loinc.org/" in meta
    body = text[sum(len(line) + 1 for line in meta) :]
    header = body.split("\n", 1)[0].split("\t")
    assert header[:12] == [
        "subject_id",
        "subject_label",
        "predicate_id",
        "object_id",
        "object_label",
        "mapping_justification",
        "confidence",
        "author_id",
        "reviewer_id",
        "mapping_date",
        "comment",
        "mapping_tool",
    ]
    assert "LOCAL_ORG_12_LAB:ГЛЮ-1\tГлюкоза крови (натощак)\tskos:exactMatch\tLOINC:2339-0" in body
    assert "LOCAL_ORG_12_LAB:HB%20A1C%7C%25\t\tskos:exactMatch\tsssom:NoTermFound" in body
    assert "semapv:ManualMappingCuration" in body  # reviewed rows
    assert "\tskos:narrowMatch\tLOINC:2345-7\t\tsemapv:UnspecifiedMatching\t" in body
    # the prefixes of the known systems
    snomed = to_sssom(_minimal_doc())
    assert "#  SCTID: http://snomed.info/id/" in snomed
    assert "LOCAL_ORG_3_DX:I10\t\tskos:exactMatch\tSCTID:38341003" in snomed
    assert "#  ICD10: " in to_sssom(DOCS[2])


def test_every_equivalence_has_its_own_predicate_row() -> None:
    elements = tuple(
        MapElement(f"S{i}", None, None if eq == "unmatched" else f"T{i}", None, eq)
        for i, eq in enumerate(EQUIVALENCES)
    )
    doc = ConceptMapDoc("all", "1", LOCAL_LAB, LOINC, elements)
    rows = [line.split("\t") for line in to_sssom(doc).splitlines() if not line.startswith("#")][1:]
    pairs = {(row[2], row[3] == "sssom:NoTermFound") for row in rows}
    assert len(pairs) == len(EQUIVALENCES)  # no two equivalences look alike
    assert [row[2] for row in rows] == [EQUIVALENCE_PREDICATES[eq] for eq in EQUIVALENCES]
    assert from_sssom(to_sssom(doc)) == doc


def test_method_decides_the_justification() -> None:
    def justification(method: str | None, reviewer: str | None = None) -> str:
        el = MapElement("A", None, "1-8", None, "equivalent", method=method, reviewer=reviewer)
        row = to_sssom(ConceptMapDoc("j", "1", LOCAL_LAB, LOINC, (el,))).splitlines()[-1]
        return row.split("\t")[5]

    assert justification("lexical") == "semapv:LexicalMatching"
    assert justification("embedding:e5") == "semapv:SemanticSimilarityThresholdMatching"
    assert justification("lexical+embedding:e5+rerank") == "semapv:CompositeMatching"
    assert justification("manual") == "semapv:ManualMappingCuration"
    assert justification(None) == "semapv:UnspecifiedMatching"
    assert justification("embedding:e5", reviewer="anna") == "semapv:ManualMappingCuration"


# A hand-written set in the layout of the SSSOM specification's examples: an ICD-10 → SNOMED
# map by a curator with an ORCID, a `#`+two-space metadata block, set-level slots we do not
# model, a column order of its own, a set-level mapping_tool and an unmapped code.
SPEC_STYLE = """\
# curie_map:
#   ICD10: "https://icd.who.int/browse10/2019/en#/"
#   SCTID: "http://snomed.info/id/"
#   orcid: "https://orcid.org/"
#   fhir_cs: "http://hl7.org/fhir/sid/"
# mapping_set_id: "https://example.org/mappings/icd10-snomed.sssom.tsv"
# mapping_set_title: ICD-10 to SNOMED CT, hand-curated sample
# mapping_set_version: 2024-05-01
# creator_id:
#   - orcid:0000-0002-1825-0097
# subject_source: fhir_cs:icd-10
# object_source: "http://snomed.info/sct"
# license: "https://creativecommons.org/publicdomain/zero/1.0/"
# mapping_provider: "https://example.org/"
# mapping_tool: Usagi
# publication_date: 2024-05-01
# comment: Invented for a test.
subject_id\tpredicate_id\tobject_id\tmapping_justification\tsubject_label\tobject_label\tauthor_id\tconfidence\tmapping_date
ICD10:I10\tskos:exactMatch\tSCTID:38341003\tsemapv:ManualMappingCuration\tEssential (primary) hypertension\tHypertensive disorder\torcid:0000-0002-1825-0097\t0.95\t2024-04-30
ICD10:E11\tskos:broadMatch\tSCTID:73211009\tsemapv:LexicalMatching\tType 2 diabetes mellitus\tDiabetes mellitus\t\t\t
ICD10:J45.9\tskos:closeMatch\tSCTID:195967001\tsemapv:LexicalMatching\tAsthma, unspecified\tAsthma\t\t0.7\t

ICD10:U07.1\tskos:exactMatch\tsssom:NoTermFound\tsemapv:ManualMappingCuration\tCOVID-19, virus identified\t\torcid:0000-0002-1825-0097\t\t
"""


def test_reads_a_hand_written_sssom_file(tmp_path: Path) -> None:
    path = tmp_path / "icd10-snomed.sssom.tsv"
    path.write_text(SPEC_STYLE, encoding="utf-8")
    doc = read_concept_map(path)
    assert doc.name == "icd10-snomed"
    assert doc.url == "https://example.org/mappings/icd10-snomed.sssom.tsv"
    assert doc.version == "2024-05-01"  # an unquoted YAML date is still the version text
    assert doc.title == "ICD-10 to SNOMED CT, hand-curated sample"
    assert doc.source_system == ICD10  # subject_source fhir_cs:icd-10 expanded
    assert doc.target_system == SNOMED  # a plain IRI is accepted as well
    assert doc.date == "2024-05-01"
    assert doc.status == "active"
    assert [(e.source_code, e.target_code, e.equivalence) for e in doc.elements] == [
        ("I10", "38341003", "equivalent"),
        ("E11", "73211009", "wider"),
        ("J45.9", "195967001", "inexact"),
        ("U07.1", None, "unmatched"),
    ]
    first = doc.elements[0]
    assert first.source_display == "Essential (primary) hypertension"
    assert first.target_display == "Hypertensive disorder"
    assert first.confidence == 0.95
    assert first.reviewer == "orcid:0000-0002-1825-0097"  # the curator of a manual mapping
    assert first.reviewed_at == "2024-04-30"
    assert all(e.method == "Usagi" for e in doc.elements)  # set-level mapping_tool propagated
    assert doc.elements[1].reviewer is None
    assert doc.elements[2].confidence == 0.7
    # and it is publishable as FHIR as it stands
    ConceptMap.model_validate(to_fhir(doc))
    assert from_fhir(to_fhir(doc)) == doc


def test_reads_fhir_maps_of_other_tools() -> None:
    resource: dict[str, Any] = {
        "resourceType": "ConceptMap",
        "url": "http://example.org/fhir/ConceptMap/sct-to-icd10",
        "version": "2026",
        "name": "SnomedToIcd10",
        "status": "active",
        "group": [
            {
                "source": SNOMED,
                "target": ICD10,
                "element": [
                    {
                        "code": "22298006",
                        "display": "Myocardial infarction",
                        "target": [
                            {"code": "I21", "equivalence": "equivalent"},
                            {"code": "I22", "equivalence": "subsumes"},
                        ],
                    },
                    {"code": "102499006", "display": "Fit and well"},
                ],
            },
            {
                "source": SNOMED,
                "target": ICD10,
                "element": [
                    {"code": "73211009", "target": [{"code": "E14", "equivalence": "relatedto"}]}
                ],
            },
        ],
    }
    doc = from_fhir(resource)
    assert doc.name == "sct-to-icd10"
    assert doc.url == "http://example.org/fhir/ConceptMap/sct-to-icd10"
    assert (doc.source_system, doc.target_system) == (SNOMED, ICD10)
    assert [(e.source_code, e.target_code, e.equivalence) for e in doc.elements] == [
        ("22298006", "I21", "equivalent"),
        ("22298006", "I22", "wider"),
        ("102499006", None, "unmatched"),
        ("73211009", "E14", "inexact"),
    ]
    assert from_sssom(to_sssom(doc)) == doc


def _problems(excinfo: pytest.ExceptionInfo[ConceptMapError]) -> list[str]:
    return [str(p) for p in excinfo.value.problems]


def _sssom_with_rows(*rows: str, columns: str | None = None) -> str:
    header = columns or "subject_id\tsubject_label\tpredicate_id\tobject_id\tmapping_justification"
    meta = (
        "#curie_map:\n"
        "#  LOCAL_ORG_12_LAB: 'urn:medshadow:local:org-12:lab:'\n"
        "#  LOINC: https://loinc.org/\n"
        "#mapping_set_id: urn:medshadow:conceptmap:lab\n"
        "#mapping_set_version: '1'\n"
        f"#subject_source: {LOCAL_LAB}\n"
        f"#object_source: {LOINC}\n"
    )
    return meta + header + "\n" + "".join(row + "\n" for row in rows)


GOOD_ROW = "LOCAL_ORG_12_LAB:A\tА\tskos:exactMatch\tLOINC:1-8\tsemapv:LexicalMatching"


def test_sssom_helper_reads_good_rows() -> None:
    doc = from_sssom(_sssom_with_rows(GOOD_ROW))
    assert doc.name == "lab"
    assert doc.url is None
    assert doc.elements == (
        MapElement("A", "А", "1-8", None, "equivalent", method="semapv:LexicalMatching"),
    )


def test_sssom_missing_column_is_named() -> None:
    text = _sssom_with_rows(
        "LOCAL_ORG_12_LAB:A\tskos:exactMatch\tLOINC:1-8",
        columns="subject_id\tpredicate_id\tobject_id",
    )
    with pytest.raises(ConceptMapError) as excinfo:
        from_sssom(text, source="lab.sssom.tsv")
    assert _problems(excinfo) == ["line 8: missing column(s): mapping_justification"]
    assert str(excinfo.value).startswith("lab.sssom.tsv: line 8: missing column")


def test_sssom_bad_rows_are_all_listed_with_their_lines() -> None:
    text = _sssom_with_rows(
        GOOD_ROW,
        "LOCAL_ORG_12_LAB:B\tБ\tskos:sortOfMatch\tLOINC:2-6\tsemapv:LexicalMatching",  # line 10
        "LOCAL_ORG_12_LAB:C\tВ\tskos:exactMatch\t\tsemapv:LexicalMatching",  # 11: no object
        "LOCAL_ORG_12_LAB:D\tГ\tskos:exactMatch\tRXNORM:123\tsemapv:LexicalMatching",  # 12
        "LOCAL_ORG_12_LAB:E\tД\tskos:exactMatch\tLOINC:3-4",  # 13: a field short
        "LOCAL_ORG_12_LAB:A\tА\tskos:exactMatch\tLOINC:1-8\tsemapv:LexicalMatching",  # 14: repeat
    )
    with pytest.raises(ConceptMapError) as excinfo:
        from_sssom(text, source="lab.sssom.tsv")
    problems = _problems(excinfo)
    assert problems == [
        "line 10: unknown predicate_id 'skos:sortOfMatch' (expected one of owl:equivalentClass, "
        "skos:exactMatch, skos:broadMatch, skos:narrowMatch, skos:relatedMatch, skos:closeMatch, "
        "rdfs:subClassOf)",
        "line 11: target code missing for a matched (equivalent) row",
        "line 12: object_id 'RXNORM:123': prefix 'RXNORM' is not in the curie_map",
        "line 13: 4 fields, the header has 5",
        "line 14: source 'A' → target '1-8' repeats row 1",
    ]
    message = str(excinfo.value)
    assert message.startswith("lab.sssom.tsv: 5 problems, nothing was read:")
    assert all(p in message for p in problems)
    assert isinstance(excinfo.value, TerminologyError)
    assert isinstance(excinfo.value, ValueError)


def test_sssom_matched_row_without_target_and_bad_confidence() -> None:
    text = _sssom_with_rows(
        "LOCAL_ORG_12_LAB:A\tskos:exactMatch\tLOINC:1-8\tsemapv:LexicalMatching\t1.5",
        "LOCAL_ORG_12_LAB:B\tskos:exactMatch\tLOINC:\tsemapv:LexicalMatching\t",
        "LOCAL_ORG_12_LAB:C\towl:sameAs\tLOINC:2-6\t\t",
        columns="subject_id\tpredicate_id\tobject_id\tmapping_justification\tconfidence",
    )
    with pytest.raises(ConceptMapError) as excinfo:
        from_sssom(text)
    assert _problems(excinfo) == [
        "line 9: confidence 1.5 is not a number from 0 to 1",
        "line 10: target code '' is not a valid code",
        "line 11: unknown predicate_id 'owl:sameAs' (expected one of owl:equivalentClass, "
        "skos:exactMatch, skos:broadMatch, skos:narrowMatch, skos:relatedMatch, skos:closeMatch, "
        "rdfs:subClassOf)",
        "line 11: mapping_justification is empty (SSSOM requires one)",
    ]


def test_sssom_subject_prefix_not_declared() -> None:
    text = _sssom_with_rows("ORG12:A\t\tskos:exactMatch\tLOINC:1-8\tsemapv:LexicalMatching")
    with pytest.raises(
        ConceptMapError,
        match=r"line 9: subject_id 'ORG12:A': prefix 'ORG12' is not in the curie_map",
    ):
        from_sssom(text)


def test_more_than_twenty_problems_are_counted_and_the_first_twenty_listed() -> None:
    rows = [
        f"LOCAL_ORG_12_LAB:C{i}\t\tskos:nope\tLOINC:1-8\tsemapv:LexicalMatching" for i in range(25)
    ]
    with pytest.raises(ConceptMapError) as excinfo:
        from_sssom(_sssom_with_rows(*rows))
    assert len(excinfo.value.problems) == 25
    message = str(excinfo.value)
    assert "25 problems" in message
    assert "line 28:" in message  # the 20th
    assert "line 29:" not in message
    assert message.endswith("... and 5 more")


def test_sssom_without_metadata_or_with_broken_yaml() -> None:
    with pytest.raises(ConceptMapError, match=r"^x.tsv: line 1: no '#' metadata block"):
        from_sssom("subject_id\tpredicate_id\n", source="x.tsv")
    with pytest.raises(ConceptMapError, match=r"^<input>: line 3: metadata block is not YAML"):
        from_sssom("#curie_map:\n#  A: [unclosed\n#b: c\nsubject_id\n")


def test_fhir_not_json_names_file_and_position(tmp_path: Path) -> None:
    path = tmp_path / "map.json"
    path.write_text('{"resourceType": "ConceptMap",\n  "id": }', encoding="utf-8")
    with pytest.raises(ConceptMapError) as excinfo:
        read_concept_map(path)
    assert str(excinfo.value).startswith(f"{path}: line 2 column 9: not JSON")


def test_fhir_wrong_resource_type() -> None:
    with pytest.raises(
        ConceptMapError, match=r"^<input>: resourceType: expected ConceptMap, found 'ValueSet'"
    ):
        from_fhir({"resourceType": "ValueSet", "id": "x"})
    with pytest.raises(ConceptMapError, match="not a JSON object"):
        from_fhir([1, 2])


def test_fhir_bad_targets_are_all_listed_with_json_paths() -> None:
    resource = to_fhir(_lab_doc())
    targets = resource["group"][0]["element"]
    targets[0]["target"][1]["equivalence"] = "sameish"
    del targets[2]["target"][0]["code"]  # CHOL → wider, now without a code
    targets[3]["target"][0]["dependsOn"] = [{"property": "x", "value": "y"}]
    targets[4]["target"][0]["extension"][0]["extension"][0] = {
        "url": "confidence",
        "valueDecimal": 2,
    }
    with pytest.raises(ConceptMapError) as excinfo:
        from_fhir(resource, source="org12.json")
    assert _problems(excinfo) == [
        "group[0].element[0].target[1]: unknown equivalence 'sameish' (expected one of equal, "
        "equivalent, wider, narrower, inexact, unmatched)",
        "group[0].element[2].target[0]: target code missing for a matched (wider) row",
        "group[0].element[3].target[0].dependsOn: not supported: a conditional map changes its meaning",
        "group[0].element[4].target[0]: confidence 2.0 is not a number from 0 to 1",
    ]
    assert str(excinfo.value).startswith("org12.json: 4 problems")


def test_fhir_groups_with_different_systems_are_refused() -> None:
    resource = to_fhir(_minimal_doc())
    other = json.loads(json.dumps(resource["group"][0]))
    other["target"] = ICD10
    resource["group"].append(other)
    with pytest.raises(ConceptMapError, match=r"group\[1\]: maps .* but group\[0\] maps"):
        from_fhir(resource)
    other["target"] = SNOMED
    other["element"][0]["code"] = "I11"
    assert [e.source_code for e in from_fhir(resource).elements] == ["I10", "I11"]


def test_fhir_unmatched_target_with_a_code_is_refused() -> None:
    resource = to_fhir(_minimal_doc())
    resource["group"][0]["element"][0]["target"][0]["equivalence"] = "unmatched"
    with pytest.raises(ConceptMapError, match=r"target\[0\]: an unmatched row has no target code"):
        from_fhir(resource)


def test_read_and_write_need_a_known_extension(tmp_path: Path) -> None:
    with pytest.raises(ConceptMapError, match=r"map\.xml: unknown format"):
        write_concept_map(_minimal_doc(), tmp_path / "map.xml")
    with pytest.raises(ConceptMapError, match=r"missing\.json: cannot read"):
        read_concept_map(tmp_path / "missing.json")


def test_building_bad_records_fails_early() -> None:
    with pytest.raises(ConceptMapError, match="unknown equivalence 'same'"):
        MapElement("A", None, "B", None, "same")
    with pytest.raises(ConceptMapError, match=r"target code missing for a matched \(wider\) row"):
        MapElement("A", None, None, None, "wider")
    with pytest.raises(ConceptMapError, match="not an ISO 8601 date or date-time with a time zone"):
        MapElement("A", None, "B", None, "equal", reviewed_at="2026-11-23T10:00:00")
    with pytest.raises(ConceptMapError) as excinfo:
        ConceptMapDoc(
            "org 12",
            "",
            LOCAL_LAB,
            "loinc",
            (
                MapElement("A", None, "B", None, "equal"),
                MapElement("A", None, None, None, "unmatched"),
            ),
            status="published",
        )
    assert _problems(excinfo) == [
        "name: 'org 12' is not a machine name (1-64 letters, digits, '-', '.')",
        "version: '' is not a version",
        "target_system: 'loinc' is not an absolute URI",
        "status: 'published' is not one of draft, active, retired, unknown",
        "elements[1]: source 'A' is both unmatched and mapped (rows 1 and 2)",
    ]
    # empty optional strings are None, so both formats can carry them
    assert MapElement("A", "", "B", "", "equal", comment="").comment is None


def test_sssom_systems_come_from_the_prefixes_when_no_source_is_given() -> None:
    text = (
        "#curie_map:\n"
        "#  LOCAL_ORG_12_LAB: 'urn:medshadow:local:org-12:lab:'\n"
        "#  SCTID: http://snomed.info/id/\n"
        "#mapping_set_id: https://example.org/sets/lab-findings\n"
        "#mapping_set_version: 1.10\n"
        "subject_id\tpredicate_id\tobject_id\tmapping_justification\n"
        "LOCAL_ORG_12_LAB:A%20B\tskos:narrowMatch\tSCTID:271737000\tsemapv:UnspecifiedMatching\n"
    )
    doc = from_sssom(text)
    assert (doc.source_system, doc.target_system) == (LOCAL_LAB, SNOMED)
    assert doc.version == "1.10"  # unquoted YAML, still the text as written
    assert doc.name == "lab-findings"
    assert doc.elements == (MapElement("A B", None, "271737000", None, "narrower"),)
    with pytest.raises(ConceptMapError, match="mapping_set_id: missing"):
        from_sssom(text.replace("#mapping_set_id: https://example.org/sets/lab-findings\n", ""))


def test_metadata_with_awkward_text_round_trips() -> None:
    doc = ConceptMapDoc(
        "awkward",
        "3",
        LOCAL_LAB,
        LOINC,
        (MapElement("A", "a", "1-8", "b", "equal"),),
        title='two\nlines: "# not a comment" — и по-русски',
        publisher="Clinic: 12 | lab",
        status="retired",
    )
    assert from_sssom(to_sssom(doc)) == doc
    assert from_fhir(to_fhir(doc)) == doc
