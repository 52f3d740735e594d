"""Readings over GraphQL: series, trends and paged windows on Patient, and ingestReadings."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import neo4j
import pytest
from starlette.testclient import TestClient

from app.readings import load_readings
from app.server import create_app
from app.settings import Settings
from loaders.iot_gen import generate_iot
from tests.conftest import graphql_request
from tests.graph.iot_data import (
    LoadedIot,
    cleanup,
    expected_readings,
    link_to_test_person,
    python_trend,
    unique_vendor,
)

TOKENS = {"dev": "device", "doc": "clinician", "pat": "patient"}

READS = """
query($id: ID!, $since: DateTime!, $until: DateTime, $after: String) {
  patient(id: $id) { ... on Patient {
    readingSeries { id metric unit code { system code } device { id type }
      source { domainKind domainId recordId } count first last latestValue }
    readingTrend(metric: "heart_rate", since: $since, until: $until, every: DAY) {
      start end count min max mean stddev }
    readings(metric: "heart_rate", since: $since, until: $until, first: 400, after: $after) {
      edges { node { time value unit } } pageInfo { hasNextPage endCursor } }
  } }
}
"""

INGEST = """
mutation($vendor: String!, $readings: [ReadingInput!]!) {
  ingestReadings(vendor: $vendor, readings: $readings) {
    __typename
    ... on IngestReadingsResult { accepted rejected inserted replaced unchanged
      errors { index reason } changedRecords }
    ... on AccessDenied { message }
  }
}
"""


@pytest.fixture(scope="module")
def linked(
    driver: neo4j.Driver, sample_domains: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LoadedIot, str, str]]:
    """A loaded IoT export; one account's record linked to a Person (standing in for the MPI)."""
    vendor = unique_vendor()
    out = tmp_path_factory.mktemp("iot")
    generate_iot(sample_domains, out, seed=21, days=4, fraction=0.2, vendor=vendor)
    report = load_readings(
        driver,
        [out / "accounts.ndjson", out / "devices.ndjson", out / "readings.ndjson"],
        vendor=vendor,
        quarantine_dir=tmp_path_factory.mktemp("q"),
    )
    assert report.ok
    account = sorted(expected_readings(out / "readings.ndjson"))[0][0]
    person = link_to_test_person(driver, f"iot:{vendor}/Patient/{account}")
    yield LoadedIot(vendor, out, report), account, person
    cleanup(driver, vendor)


@pytest.fixture(scope="module")
def client(settings: Settings, driver: neo4j.Driver) -> Iterator[TestClient]:
    tuned = settings.model_copy(update={"api": settings.api.model_copy(update={"tokens": TOKENS})})
    with TestClient(create_app(tuned, driver=driver)) as c:
        yield c


def gql(client: TestClient, query: str, token: str | None = None, **variables: Any) -> Any:
    body = graphql_request(client, query, token, **variables)
    assert "errors" not in body, body["errors"]
    return body["data"]


def _iso(t: int) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


def _epoch(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp())


def test_patient_reading_series_trend_and_window(
    client: TestClient, linked: tuple[LoadedIot, str, str]
) -> None:
    iot, account, person = linked
    expected = {
        k: v for k, v in expected_readings(iot.out / "readings.ndjson").items() if k[0] == account
    }
    hr = next(v for k, v in expected.items() if k[2] == "heart_rate")
    since, until = min(hr) + 3 * 3600 + 5, max(hr) - 7200
    data = gql(client, READS, "doc", id=person, since=_iso(since), until=_iso(until))
    p = data["patient"]

    series = {s["metric"]: s for s in p["readingSeries"]}
    assert set(series) == {k[2] for k in expected}
    s = series["heart_rate"]
    assert s["unit"] == "/min"
    assert s["code"] == {"system": "http://loinc.org", "code": "8867-4"}
    assert s["device"]["type"] == "wearable"
    assert s["source"]["domainKind"] == "IOT_CLOUD"
    assert s["source"]["domainId"] == iot.domain
    assert s["count"] == len(hr)
    assert _epoch(s["first"]) == min(hr)
    assert _epoch(s["last"]) == max(hr)
    assert s["latestValue"] == hr[max(hr)]

    lo = since - since % 86_400
    hi = until + (-until) % 86_400
    want = python_trend(hr, lo, hi, 86_400, 0)
    got = p["readingTrend"]
    assert [(_epoch(g["start"]), g["count"], g["min"], g["max"]) for g in got] == [
        w[:4] for w in want
    ]
    assert all(_epoch(g["end"]) - _epoch(g["start"]) == 86_400 for g in got)
    for g, w in zip(got, want, strict=True):
        assert math.isclose(g["mean"], w[4], rel_tol=1e-9)
        assert math.isclose(g["stddev"], w[5], rel_tol=1e-6, abs_tol=1e-6)

    # page through the raw window with the cursor
    window = sorted((t, v) for t, v in hr.items() if since <= t < until)
    seen: list[tuple[int, float]] = []
    page = p["readings"]
    while True:
        seen += [(_epoch(e["node"]["time"]), e["node"]["value"]) for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        page = gql(
            client,
            READS,
            "doc",
            id=person,
            since=_iso(since),
            until=_iso(until),
            after=page["pageInfo"]["endCursor"],
        )["patient"]["readings"]
    assert seen == window
    assert len(window) > 400


def test_reads_are_checked_by_the_access_layer(
    client: TestClient, linked: tuple[LoadedIot, str, str]
) -> None:
    _, _, person = linked
    data = gql(
        client,
        f'{{ patient(id: "{person}") {{ __typename ... on AccessDenied {{ message }} }} }}',
        "pat",
    )
    # a patient token of another account: the patient role reads only its own person
    assert data["patient"]["__typename"] == "AccessDenied"
    assert data["patient"]["message"].startswith("not allowed: read_patient")


def test_ingest_readings_mutation(client: TestClient, linked: tuple[LoadedIot, str, str]) -> None:
    iot, account, person = linked
    readings = [
        {"account": account, "device": f"{account}-gx", "metric": "glucose",
         "time": "2025-12-31T07:00:00Z", "value": 97, "unit": "mg/dL"},
        {"account": account, "device": f"{account}-gx", "metric": "glucose",
         "time": "2025-12-31T07:00:00Z", "value": 97, "unit": "mmol/L"},
        {"account": "ghost", "device": "g", "metric": "spo2",
         "time": "2025-12-31T07:00:00Z", "value": 95, "unit": "%"},
    ]  # fmt: skip
    denied = gql(client, INGEST, "doc", vendor=iot.vendor, readings=readings)
    assert denied["ingestReadings"]["__typename"] == "AccessDenied"
    result = gql(client, INGEST, "dev", vendor=iot.vendor, readings=readings)["ingestReadings"]
    assert result["accepted"] == result["inserted"] == 1
    assert result["rejected"] == 2
    assert [e["index"] for e in result["errors"]] == [1, 2]
    assert "does not match glucose" in result["errors"][0]["reason"]
    assert "unknown account 'ghost'" in result["errors"][1]["reason"]
    assert result["changedRecords"] == [f"{iot.domain}/Patient/{account}"]
    again = gql(client, INGEST, "dev", vendor=iot.vendor, readings=readings[:1])["ingestReadings"]
    assert (again["unchanged"], again["changedRecords"]) == (1, [])
    since = "2025-12-01T00:00:00+00:00"
    series = gql(client, READS, "doc", id=person, since=since, until=None)["patient"]
    glucose = [s for s in series["readingSeries"] if s["metric"] == "glucose"]
    assert [(s["count"], s["latestValue"]) for s in glucose] == [(1, 97.0)]
