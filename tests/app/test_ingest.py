"""``POST /ingest/readings`` and ``medshadow load readings`` against the session's real Neo4j."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import neo4j
import orjson
import pytest
from starlette.testclient import TestClient

from app.readings import load_readings
from app.server import create_app
from app.settings import Settings
from loaders.iot_gen import generate_iot
from tests.graph.iot_data import LoadedIot, cleanup, expected_readings, unique_vendor

TOKENS = {"dev-token": "device", "admin-token": "admin", "doc-token": "clinician"}


@pytest.fixture(scope="module")
def accounts_only(
    driver: neo4j.Driver, sample_domains: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LoadedIot]:
    """Accounts and devices loaded; the readings are left for the endpoint to ingest."""
    vendor = unique_vendor()
    out = tmp_path_factory.mktemp("iot")
    generate_iot(sample_domains, out, seed=9, days=2, fraction=0.25, vendor=vendor)
    report = load_readings(
        driver,
        [out / "accounts.ndjson", out / "devices.ndjson"],
        vendor=vendor,
        quarantine_dir=tmp_path_factory.mktemp("q"),
    )
    assert report.ok
    assert report.accounts == 3
    yield LoadedIot(vendor, out, report)
    cleanup(driver, vendor)


@pytest.fixture(scope="module")
def client(settings: Settings, driver: neo4j.Driver) -> Iterator[TestClient]:
    tuned = settings.model_copy(update={"api": settings.api.model_copy(update={"tokens": TOKENS})})
    with TestClient(create_app(tuned, driver=driver)) as c:
        yield c


def _post(
    client: TestClient, body: bytes, token: str | None, vendor: str | None
) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/x-ndjson"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    params = {"vendor": vendor} if vendor else {}
    response = client.post("/ingest/readings", content=body, headers=headers, params=params)
    data: dict[str, Any] = response.json()
    return response.status_code, data


def test_ingest_needs_a_device_or_admin_token(
    client: TestClient, accounts_only: LoadedIot, driver: neo4j.Driver
) -> None:
    body = (accounts_only.out / "readings.ndjson").read_bytes()[:2000].rsplit(b"\n", 1)[0]
    vendor = accounts_only.vendor
    status, data = _post(client, body, None, vendor)
    assert (status, data["error"]) == (401, "bearer token required")
    assert _post(client, body, "wrong", vendor)[0] == 401
    status, data = _post(client, body, "doc-token", vendor)
    assert (status, data["error"]) == (403, "not allowed: ingest_readings")
    assert _post(client, body, "dev-token", None)[0] == 400
    assert _post(client, body, "dev-token", "Bad Vendor!")[0] == 400
    assert _post(client, b"", "dev-token", vendor)[0] == 400
    records, _, _ = driver.execute_query(
        "MATCH (s:ReadingSeries {sourceDomain: $d}) RETURN count(s) AS n",
        d=accounts_only.domain,
    )
    assert records[0]["n"] == 0  # nothing was written by the refused requests


def test_streamed_ingest_keeps_good_lines_and_reports_bad_ones(
    client: TestClient, accounts_only: LoadedIot, driver: neo4j.Driver
) -> None:
    good = (accounts_only.out / "readings.ndjson").read_bytes().splitlines()
    lines = list(good)
    bad_at = {  # 1-based line numbers of the inserted bad lines
        3: b'{"account": ',
        50: orjson.dumps({**orjson.loads(good[0]), "metric": "mood"}),
        2500: orjson.dumps({**orjson.loads(good[0]), "account": "ghost"}),
    }
    for n in sorted(bad_at):
        lines.insert(n - 1, bad_at[n])
    body = b"\n".join(lines) + b"\n"
    status, data = _post(client, body, "dev-token", accounts_only.vendor)
    assert status == 200, data
    assert data["accepted"] == data["inserted"] == len(good)
    assert data["rejected"] == 3
    errors = {e["line"]: e["reason"] for e in data["errors"]}
    assert set(errors) == set(bad_at)
    assert "malformed JSON" in errors[3]
    assert "unknown metric 'mood'" in errors[50]
    assert "unknown account 'ghost'" in errors[2500]
    expected = expected_readings(accounts_only.out / "readings.ndjson")
    accounts = {k[0] for k in expected}
    assert set(data["changed"]) == {f"{accounts_only.domain}/Patient/{a}" for a in accounts}
    records, _, _ = driver.execute_query(
        "MATCH (s:ReadingSeries {sourceDomain: $d}) RETURN sum(s.count) AS n, count(s) AS s",
        d=accounts_only.domain,
    )
    assert records[0]["n"] == len(good)
    assert records[0]["s"] == len(expected)
    # every person whose readings arrived has writes in the audit trail, by the device, one per
    # written batch that carried their readings (as the change feed), all of this one request
    audit = """
        MATCH (r:Patient)-[:RECORD_OF]->(p:Person) WHERE r.uid IN $records
        OPTIONAL MATCH (e:AuditEvent {person: p.uid, basis: 'ingest:readings'})
        RETURN p.uid AS person, collect(e {.actor, .role, .action, .what, .request}) AS events
    """
    rows, _, _ = driver.execute_query(audit, records=sorted(data["changed"]))
    assert len(rows) == len(accounts)
    events = [e for row in rows for e in row["events"]]
    assert all(row["events"] for row in rows)
    assert {(e["actor"], e["role"], e["action"]) for e in events} == {
        ("token:device", "device", "write")
    }
    assert {e["what"] for e in events} == {f"ReadingSeries in {accounts_only.domain}"}
    assert len({e["request"] for e in events}) == 1
    audited = len(events)

    # the same body again: everything accepted as unchanged, nothing changed, nothing audited
    status, again = _post(client, body, "admin-token", accounts_only.vendor)
    assert status == 200
    assert (again["accepted"], again["inserted"], again["unchanged"]) == (len(good), 0, len(good))
    assert (again["rejected"], again["changed"]) == (3, {})
    rows, _, _ = driver.execute_query(audit, records=sorted(data["changed"]))
    assert sum(len(row["events"]) for row in rows) == audited


def test_cli_load_readings_exits_3_when_lines_were_rejected(
    neo4j_uri: str, driver: neo4j.Driver, accounts_only: LoadedIot, tmp_path: Path
) -> None:
    path = tmp_path / "readings-extra.ndjson"
    account = next(iter(expected_readings(accounts_only.out / "readings.ndjson")))[0]
    path.write_text(
        f'{{"account":"{account}","device":"{account}-x","metric":"glucose","time":"2025-12-31T08:00:00Z",'
        '"value":104,"unit":"mg/dL"}\n'
        f'{{"account":"{account}","device":"{account}-x","metric":"glucose","time":"2025-12-31T08:00:00Z",'
        '"value":104,"unit":"mmol/L"}\n'
    )
    env = {
        **os.environ,
        "MEDSHADOW_NEO4J__URI": neo4j_uri,
        "MEDSHADOW_DATA_DIR": str(tmp_path / "data"),
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "app.cli",
            "load",
            "readings",
            str(path),
            "--vendor",
            accounts_only.vendor,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 3, done.stderr
    assert "1 lines rejected" in done.stderr
    quarantined = list((tmp_path / "data" / "quarantine").glob("*.ndjson"))
    assert len(quarantined) == 1
    assert f"{path}:2" in quarantined[0].read_text()
    records, _, _ = driver.execute_query(
        "MATCH (s:ReadingSeries {uid: $uid}) RETURN s.count AS n, s.lastValue AS v",
        uid=f"{accounts_only.domain}/Series/{account}-x/glucose",
    )
    assert [(r["n"], r["v"]) for r in records] == [(1, 104.0)]
