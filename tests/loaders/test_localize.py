"""A clinic of the sample speaking its own codes: rewritten bundles, code lists, ground truth."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import orjson
import pytest

from loaders.fhir import parse_unit
from loaders.localize import (
    LOCAL_TRUTH_NAME,
    LOINC,
    SNOMED,
    LocalizeError,
    abbreviate,
    local_system,
    localize_clinic,
)
from ontology.model import Label


def _busiest_clinic(split: Path) -> str:
    return max(
        (d for d in split.iterdir() if d.is_dir()), key=lambda d: len(list(d.glob("*.json")))
    ).name


@pytest.fixture
def split(sample_domains: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "domains"
    shutil.copytree(sample_domains, copy)
    return copy


def _codings(split: Path, org: str) -> list[dict[str, str]]:
    out = []
    for path in sorted((split / org).glob("*.json")):
        for entry in orjson.loads(path.read_bytes())["entry"]:
            r = entry["resource"]
            if r["resourceType"] in ("Condition", "Observation"):
                out += r["code"]["coding"]
    return out


def test_clinic_codes_become_local_with_truth_and_code_lists(split: Path, tmp_path: Path) -> None:
    org = _busiest_clinic(split)
    before = _codings(split, org)
    report = localize_clinic(split, org, seed=3, out_dir=tmp_path / "local")

    after = _codings(split, org)
    dx, lab = local_system(org, "dx"), local_system(org, "lab")
    assert not any(c["system"] == SNOMED for c in after)  # no condition keeps its SNOMED code
    assert sum(c["system"] in (dx, lab) for c in after) == report.codings_replaced > 0
    # labs are recoded, vital signs and surveys keep LOINC
    assert any(c["system"] == LOINC for c in after)
    assert sum(c["system"] == LOINC for c in before) > sum(c["system"] == LOINC for c in after)

    truth = orjson.loads((tmp_path / "local" / LOCAL_TRUTH_NAME).read_bytes())
    assert len(truth) == len(report.diagnoses) + len(report.labs)
    for code in report.diagnoses:
        assert truth[f"{code.system}|{code.code}"] == code.standard
        assert code.standard.startswith(SNOMED + "|")
        assert code.code.startswith("DX")
    used = {(c["system"], c["code"]) for c in after}
    assert {(c.system, c.code) for c in report.labs} <= used

    with (tmp_path / "local" / "labs.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["code"] for r in rows} == {c.code for c in report.labs}
    assert sum(int(r["frequency"]) for r in rows) == sum(c.frequency for c in report.labs)
    assert any(r["unit"] for r in rows)
    # non-English or abbreviated displays; the standard name only where it is already short
    # (e.g. "NT-proBNP")
    standard_names = {c.get("display") for c in before}
    local = report.diagnoses + report.labs
    same = [c.display for c in local if c.display in standard_names]
    assert len(same) <= len(local) // 10, same
    assert any(any("\u0400" <= ch <= "\u04ff" for ch in c.display) for c in report.labs)


def test_the_loader_reads_local_codes_as_the_clinics_own_concepts(
    split: Path, tmp_path: Path
) -> None:
    org = _busiest_clinic(split)
    report = localize_clinic(split, org, seed=3, out_dir=tmp_path / "local")
    bundle = next(
        p for p in sorted((split / org).glob("*.json")) if b"urn:medshadow:local" in p.read_bytes()
    )
    unit = parse_unit([bundle])
    assert not unit.quarantined
    concepts = [n for n in unit.batch.node_rows() if n.label is Label.CONCEPT]
    local = [
        c for c in concepts if str(c.props.get("system", "")).startswith("urn:medshadow:local:")
    ]
    assert local
    known = {f"{c.system}|{c.code}" for c in report.diagnoses + report.labs}
    assert {c.uid for c in local} <= known


def test_rerun_is_deterministic_and_starts_from_the_originals(split: Path, tmp_path: Path) -> None:
    org = _busiest_clinic(split)
    first = localize_clinic(split, org, seed=3, out_dir=tmp_path / "local")
    snapshot = {p.name: p.read_bytes() for p in (split / org).glob("*.json")}
    again = localize_clinic(split, org, seed=3, out_dir=tmp_path / "local")
    assert again == first
    assert {p.name: p.read_bytes() for p in (split / org).glob("*.json")} == snapshot
    with pytest.raises(LocalizeError, match="no clinic"):
        localize_clinic(split, "no-such-clinic")


def test_abbreviations_read_like_a_clinic_list() -> None:
    assert abbreviate("Chronic kidney disease stage 3 (disorder)") == "CKD stage 3"
    assert abbreviate("Diabetes mellitus type 2 (disorder)") == "DM type 2"
    assert abbreviate("Hemoglobin [Mass/volume] in Blood") == "Hemoglobin [m/v] bld"
