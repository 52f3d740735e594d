"""Phase one of a terminology load: the packaged sources parse into typed concept records, and
bad rows are reported with file and line while the good rows are kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from terminology.model import ICD10, ICD10CM, LOINC, RXNORM, SNOMED, UnknownSystemError
from terminology.sources import (
    parse,
    parse_drugs,
    parse_icd10,
    parse_icd10cm,
    parse_loinc,
    parse_synthea,
    parse_ucum,
    read_ru_mkb10,
    system_url,
    ucum_valid,
)


def test_who_icd10_has_hierarchy_and_russian_designations() -> None:
    [who] = parse_icd10()
    assert who.info.url == ICD10
    assert who.info.version == "2019"
    by_code = {c.code: c for c in who.concepts}
    assert len(by_code) == len(who.concepts) > 12_000
    e11 = by_code["E11"]
    assert e11.parents == ("E10-E14",)
    assert by_code["E10-E14"].parents == ("IV",)
    assert [(d.language, d.use) for d in e11.designations] == [("ru", "display")]
    assert "диабет" in e11.designations[0].value.lower()
    assert who.problems == []


def test_icd10cm_folds_blocks_named_like_their_category() -> None:
    [cm] = parse_icd10cm()
    assert cm.info.url == ICD10CM
    codes = [c.code for c in cm.concepts]
    assert len(codes) == len(set(codes)) > 98_000
    by_code = {c.code: c for c in cm.concepts}
    assert by_code["B10"].parents == ("1",)
    assert by_code["E11.9"].parents == ("E11",)
    assert by_code["E11.9"].properties["leaf"] is True
    assert all(p in by_code for c in cm.concepts for p in c.parents)


def test_bad_russian_rows_are_named_by_line_and_good_rows_kept(tmp_path: Path) -> None:
    path = tmp_path / "mkb.csv"
    path.write_text(
        "ID;REC_CODE;MKB_CODE;MKB_NAME;ID_PARENT;ADDL_CODE;ACTUAL;DATE\n"
        '1;01;"E11";"Сахарный диабет 2 типа";;;1;\n'
        '2;02;"";"без кода";;;1;\n'
        '3;03;"E11";"дубликат";;;1;\n',
        encoding="utf-8",
    )
    names, problems = read_ru_mkb10(path)
    assert names == {"E11": "Сахарный диабет 2 типа"}
    assert [(p.line, p.code, p.reason) for p in problems] == [
        (3, None, "empty code or name"),
        (4, "E11", "duplicate code"),
    ]
    assert str(problems[1]) == f"{path}:4: E11: duplicate code"
    [who] = parse_icd10(path)
    assert who.notes["russian names matched"] == 1
    assert len(who.problems) == 2


def test_bad_loinc_rows_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "top.csv"
    path.write_text(
        "LOINC #,Long Common Name,CLASS,Rank\n"
        "2160-0,Creatinine [Mass/volume] in Serum or Plasma,Chem,1\n"
        "not-a-code,Whatever,Chem,2\n"
        "718-7,,HEM/BC,3\n",
        encoding="utf-8",
    )
    [loinc] = parse_loinc({"US": path})
    assert [c.code for c in loinc.concepts] == ["2160-0"]
    assert loinc.concepts[0].properties == {"class": "Chem", "rankUS": 1}
    assert [(p.path, p.line, p.code) for p in loinc.problems] == [
        (str(path), 3, "not-a-code"),
        (str(path), 4, "718-7"),
    ]


def test_shipped_loinc_top2000_merges_us_and_si() -> None:
    [loinc] = parse_loinc()
    assert loinc.info.url == LOINC
    assert loinc.info.content == "fragment"
    by_code = {c.code: c for c in loinc.concepts}
    assert by_code["718-7"].display == "Hemoglobin [Mass/volume] in Blood"
    assert {"rankUS", "rankSI"} <= set(by_code["718-7"].properties)
    assert loinc.problems == []


def test_synthea_codes_are_harvested_and_broken_modules_reported(tmp_path: Path) -> None:
    (tmp_path / "good.json").write_text(
        '{"states": {"a": {"codes": [{"system": "SNOMED-CT", "code": "44054006",'
        ' "display": "Diabetes"}]}, "b": {"codes": [{"system": "RxNorm", "code": "860975",'
        ' "display": "metformin"}, {"system": "NUBC", "code": "01", "display": "x"}]}}}'
    )
    (tmp_path / "broken.json").write_text('{"states": [')
    systems = {p.info.url: p for p in parse_synthea(tmp_path)}
    assert set(systems) == {SNOMED, RXNORM}
    assert [c.code for c in systems[SNOMED].concepts] == ["44054006"]
    problems = [p for s in systems.values() for p in s.problems]
    assert len(problems) == 1
    assert problems[0].path.endswith("broken.json")
    assert problems[0].line == 1


def test_packaged_synthea_modules_give_fragments_without_hierarchy() -> None:
    systems = {p.info.url: p for p in parse_synthea()}
    assert {SNOMED, LOINC, RXNORM} <= set(systems)
    snomed = systems[SNOMED]
    assert not snomed.info.hierarchical
    assert len(snomed.concepts) > 1000
    assert all(c.parents == () for c in snomed.concepts)
    assert "44054006" in {c.code for c in snomed.concepts}


def test_ucum_atoms_common_units_and_grammar() -> None:
    [ucum] = parse_ucum()
    by_code = {c.code: c for c in ucum.concepts}
    assert by_code["m[Hg]"].display == "meter of mercury column"
    assert by_code["mm[Hg]"].display == "millimeter of mercury"  # the common-units table
    assert by_code["m"].properties["kind"] == "base unit"
    assert "mg/dL" in by_code
    assert ucum_valid("mg/dL")
    assert ucum_valid("10*3/uL")
    assert not ucum_valid("mg//dL")
    assert [str(p).rsplit(": ", 1)[-1] for p in ucum.problems] == ["not valid UCUM"]


def test_drug_dictionary_names_ids_and_mesh_hierarchy() -> None:
    [drugs] = parse_drugs()
    by_code = {c.code: c for c in drugs.concepts}
    apap = by_code["acetaminophen"]
    assert apap.properties["drugbankId"] == "DB00316"
    assert {"tylenol", "paracetamol"} <= {d.value for d in apap.designations}
    with_parents = [c for c in drugs.concepts if c.parents]
    assert with_parents
    assert all(p in by_code for c in with_parents for p in c.parents)


def test_registry_names_and_aliases() -> None:
    assert system_url("icd10cm") == ICD10CM
    assert system_url(SNOMED) == SNOMED
    with pytest.raises(UnknownSystemError, match="nope"):
        list(parse(["nope"]))
