"""The ``medshadow`` console script, run as a user would, against the session's real Neo4j."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import neo4j
import pytest
import rdflib
from rdflib.namespace import RDF

from app.pipeline import LoadReport
from ontology.model import NAMESPACE
from ontology.rdf import node_iri
from tests.conftest import run_cli

MS = rdflib.Namespace(NAMESPACE)

CLI = [sys.executable, "-m", "app.cli"]


def test_export_rdf_round_trips_through_rdflib(
    neo4j_uri: str, driver: neo4j.Driver, loaded_sample: LoadReport, tmp_path: Path
) -> None:
    records, _, _ = driver.execute_query(
        "MATCH (p:Person)<-[:RECORD_OF]-(r:Patient) WITH p, collect(r.uid) AS recs "
        "WHERE size(recs) >= 2 RETURN p.uid AS uid, recs LIMIT 1"
    )
    person, recs = records[0]["uid"], records[0]["recs"]
    out = tmp_path / "patient.ttl"
    done = run_cli(["export", "rdf", "--patient", person, "-o", str(out)], neo4j_uri, tmp_path)
    assert done.returncode == 0, done.stderr

    g = rdflib.Graph().parse(out, format="turtle")
    me = node_iri(person)
    assert (me, RDF.type, MS.Person) in g
    for rec in recs:
        assert (node_iri(rec), RDF.type, MS.Patient) in g
        assert (node_iri(rec), MS.recordOf, me) in g
    conditions, _, _ = driver.execute_query(
        "MATCH (:Person {uid: $uid})<-[:RECORD_OF]-()<-[:ABOUT]-(c:Condition)-[:CODED_AS]->(k) "
        "RETURN c.uid AS c, k.uid AS k",
        uid=person,
    )
    assert conditions
    for row in conditions:
        assert (node_iri(row["c"]), RDF.type, MS.Condition) in g
        assert (node_iri(row["c"]), MS.codedAs, node_iri(row["k"])) in g
    # Every rdf:type used for a graph node is a class of the ontology.
    onto = rdflib.Graph().parse(Path(__file__).resolve().parents[2] / "ontology" / "medshadow.ttl")
    classes = set(onto.subjects(RDF.type, rdflib.OWL.Class))
    used = {o for o in g.objects(None, RDF.type) if str(o).startswith(NAMESPACE)}
    assert used
    assert used <= classes


def test_export_rdf_unknown_patient_fails_clearly(
    neo4j_uri: str, loaded_sample: LoadReport, tmp_path: Path
) -> None:
    done = run_cli(["export", "rdf", "--patient", "nid:does-not-exist"], neo4j_uri, tmp_path)
    assert done.returncode == 1
    assert "no patient with id" in done.stderr


def test_load_command_reports_and_exits_3_on_quarantine(
    neo4j_uri: str, tmp_path: Path, scratch_dir: Path
) -> None:
    folder = scratch_dir
    (folder / "bad.json").write_text("{ nope")
    patient = {
        "resourceType": "Patient",
        "id": "cli-p1",
        "birthDate": "1970-01-01",
        "name": [{"family": "Clitest"}],
    }
    (folder / "good.json").write_text(json.dumps(patient))
    done = run_cli(["load", "fhir", str(folder)], neo4j_uri, tmp_path)
    assert done.returncode == 3, done.stderr
    assert "1 resources quarantined" in done.stderr
    assert "(:Patient)" in done.stderr
    quarantine = list((tmp_path / "data" / "quarantine").glob("*.ndjson"))
    assert len(quarantine) == 1
    assert "bad.json" in quarantine[0].read_text()


def test_ontology_check_reports_consistent(neo4j_uri: str, tmp_path: Path) -> None:
    done = run_cli(["ontology", "check"], neo4j_uri, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "consistent=True" in done.stderr.replace("\n", "")


def test_neo4j_start_status_stop_lifecycle(tmp_path: Path) -> None:
    from graph.embedded import free_port

    env = {
        **os.environ,
        "MEDSHADOW_NEO4J__HOME": str(tmp_path / "neo4j"),
        "MEDSHADOW_NEO4J__PORT": str(free_port()),
        "MEDSHADOW_NEO4J__HEAP": "512m",
        "MEDSHADOW_NEO4J__PAGECACHE": "64m",
    }
    env.pop("MEDSHADOW_NEO4J__URI", None)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=300)

    try:
        started = cli("neo4j", "start")
        assert started.returncode == 0, started.stderr
        assert "APOC 5.26" in started.stderr
        status = cli("neo4j", "status")
        assert status.returncode == 0
        assert "running: bolt://127.0.0.1:" in status.stderr
    finally:
        stopped = cli("neo4j", "stop")
    assert stopped.returncode == 0
    assert "stopped" in stopped.stderr
    assert cli("neo4j", "status").returncode == 1
    # Data persists in the home: the store files are still there after the stop.
    assert (tmp_path / "neo4j" / "data" / "databases" / "neo4j").is_dir()


def test_sigterm_to_serve_stops_the_embedded_neo4j_it_started(tmp_path: Path) -> None:
    """What `docker stop` or systemd does: the server shuts down and takes its Neo4j along."""
    import signal
    import time

    import httpx2

    from graph.embedded import free_port

    home, api = tmp_path / "neo4j", free_port()
    env = {
        **os.environ,
        "MEDSHADOW_NEO4J__HOME": str(home),
        "MEDSHADOW_NEO4J__PORT": str(free_port()),
        "MEDSHADOW_NEO4J__HEAP": "512m",
        "MEDSHADOW_NEO4J__PAGECACHE": "64m",
        "MEDSHADOW_API__PORT": str(api),
        "MEDSHADOW_DATA_DIR": str(tmp_path / "data"),
    }
    env.pop("MEDSHADOW_NEO4J__URI", None)
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen([*CLI, "serve"], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx2.get(f"http://127.0.0.1:{api}/health", timeout=2).status_code == 200:
                    break
            except httpx2.TransportError:
                pass
            assert time.monotonic() < deadline, "serve did not come up"
            time.sleep(0.5)
        pid = json.loads((home / "medshadow-neo4j.json").read_text())["pid"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 128 + signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not (home / "medshadow-neo4j.json").exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
