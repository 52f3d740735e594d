"""Device readings in the real Neo4j: the series/bucket model, idempotent re-ingest, and trend
and window queries checked against values computed in Python from the generated input."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import neo4j
import pytest

from access.policy import AccessDeniedError, Principal, Role
from access.readings import ReadingAccess
from app.readings import load_readings
from graph.readings import BUCKET_SECONDS, PERIOD_ORIGIN, PERIOD_SECONDS, write_readings
from loaders.iot_gen import generate_iot
from loaders.readings import METRICS, Reading
from tests.graph.iot_data import (
    LoadedIot,
    cleanup,
    expected_readings,
    python_trend,
    unique_vendor,
)

ADMIN = Principal("test", Role.ADMIN)


@pytest.fixture(scope="module")
def iot(
    driver: neo4j.Driver, sample_domains: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LoadedIot]:
    vendor = unique_vendor()
    out = tmp_path_factory.mktemp("iot")
    generate_iot(sample_domains, out, seed=5, days=3, fraction=0.4, vendor=vendor, csv_variant=True)
    report = load_readings(
        driver,
        [out / "accounts.ndjson", out / "devices.ndjson", out / "readings.ndjson"],
        vendor=vendor,
        quarantine_dir=tmp_path_factory.mktemp("quarantine"),
        batch_size=2000,
    )
    yield LoadedIot(vendor, out, report)
    cleanup(driver, vendor)


def _snapshot(driver: neo4j.Driver, domain: str) -> dict[str, object]:
    records, _, _ = driver.execute_query(
        "MATCH (b:ReadingBucket {sourceDomain: $d}) "
        "RETURN count(b) AS buckets, sum(b.count) AS readings, sum(b.sum) AS total, "
        "sum(size(b.t)) AS entries",
        d=domain,
    )
    series, _, _ = driver.execute_query(
        "MATCH (s:ReadingSeries {sourceDomain: $d}) "
        "RETURN count(s) AS series, sum(s.count) AS counted, collect(s.lastValue) AS last",
        d=domain,
    )
    return {**records[0].data(), **series[0].data()}


def _series_uid(iot: LoadedIot, device: str, metric: str) -> str:
    return f"{iot.domain}/Series/{device}/{metric}"


def test_every_reading_is_stored_once_in_hourly_buckets(
    iot: LoadedIot, driver: neo4j.Driver
) -> None:
    expected = expected_readings(iot.out / "readings.ndjson")
    total = sum(len(v) for v in expected.values())
    assert iot.report.ok, (iot.report.reasons, iot.report.write.dangling)
    assert iot.report.readings.inserted == total == iot.report.lines
    snap = _snapshot(driver, iot.domain)
    hours = {(k, t - t % BUCKET_SECONDS) for k, vals in expected.items() for t in vals}
    assert snap["buckets"] == len(hours)
    assert snap["readings"] == snap["entries"] == snap["counted"] == total
    assert snap["series"] == len(expected)
    assert math.isclose(
        float(snap["total"]),  # type: ignore[arg-type]
        math.fsum(v for vals in expected.values() for v in vals.values()),
        rel_tol=1e-9,
    )
    # every bucket's arrays are sorted by time and agree with its aggregates
    records, _, _ = driver.execute_query(
        "MATCH (b:ReadingBucket {sourceDomain: $d})-[:IN_SERIES]->(s:ReadingSeries) "
        "RETURN b.t AS t, b.v AS v, b.count AS n, b.min AS lo, b.max AS hi, b.start AS start",
        d=iot.domain,
    )
    assert len(records) == len(hours)
    for r in records:
        assert r["t"] == sorted(r["t"])
        assert r["n"] == len(r["t"]) == len(r["v"])
        assert (r["lo"], r["hi"]) == (min(r["v"]), max(r["v"]))
        assert all(r["start"] <= t < r["start"] + BUCKET_SECONDS for t in r["t"])


def test_series_device_and_concept_follow_the_contract(
    iot: LoadedIot, driver: neo4j.Driver
) -> None:
    expected = expected_readings(iot.out / "readings.ndjson")
    account, device, metric = next(k for k in sorted(expected) if k[2] == "heart_rate")
    values = expected[(account, device, metric)]
    records, _, _ = driver.execute_query(
        """
        MATCH (s:ReadingSeries {uid: $uid})-[:ABOUT]->(r:Patient)-[:IN_DOMAIN]->(d:Domain)
        MATCH (s)-[:MEASURED_BY]->(dev:Device)-[:ABOUT]->(r)
        MATCH (s)-[:CODED_AS]->(c:Concept)
        RETURN s {.*} AS s, r {.*} AS r, d {.*} AS d, dev.uid AS dev, c {.*} AS c,
               EXISTS { (r)-[:RECORD_OF]->() } AS linked
        """,
        uid=_series_uid(iot, device, metric),
    )
    (row,) = records
    s, r = row["s"], row["r"]
    assert s["metric"] == "heart_rate"
    assert s["code"] == "8867-4"
    assert s["unit"] == "/min"
    assert s["sourceDomain"] == iot.domain
    assert s["sourceRecordId"] == f"{device}/heart_rate"
    assert s["count"] == len(values)
    assert s["firstTime"].to_native().timestamp() == min(values)
    assert s["lastTime"].to_native().timestamp() == max(values)
    assert s["lastValue"] == values[max(values)]
    assert r["uid"] == f"{iot.domain}/Patient/{account}"
    assert r["recordId"] == account
    assert "nationalId" not in r
    assert r["name"]
    assert {k: row["d"][k] for k in ("uid", "name", "kind")} == {
        "uid": iot.domain,
        "name": f"{iot.vendor} cloud",
        "kind": "IOT_CLOUD",
    }
    assert row["dev"] == f"{iot.domain}/Device/{device}"
    assert {k: row["c"][k] for k in ("uid", "system", "code", "display")} == {
        "uid": "http://loinc.org|8867-4",
        "system": "http://loinc.org",
        "code": "8867-4",
        "display": "Heart rate",
    }
    assert row["linked"], "the load links the account to a person (master patient index)"


def test_reingesting_the_same_readings_changes_nothing(
    iot: LoadedIot, driver: neo4j.Driver, tmp_path: Path
) -> None:
    before = _snapshot(driver, iot.domain)
    total = iot.report.readings.inserted
    for name in ("readings.ndjson", "readings.csv"):
        again = load_readings(
            driver, [iot.out / name], vendor=iot.vendor, quarantine_dir=tmp_path, batch_size=3000
        )
        assert again.ok
        r = again.readings
        assert (r.accepted, r.inserted, r.replaced, r.unchanged) == (total, 0, 0, total), name
        assert (r.buckets_written, r.changes) == (0, {}), name
        assert _snapshot(driver, iot.domain) == before, name


def test_a_new_value_at_the_same_second_replaces_the_old_one(
    iot: LoadedIot, driver: neo4j.Driver
) -> None:
    expected = expected_readings(iot.out / "readings.ndjson")
    account, device, metric = next(k for k in sorted(expected) if k[2] == "heart_rate")
    t = sorted(expected[(account, device, metric)])[10]
    old = expected[(account, device, metric)][t]
    before = _snapshot(driver, iot.domain)

    def put(value: float) -> None:
        r = Reading(iot.vendor, account, device, METRICS[metric], t, value)
        result = write_readings(driver, [r])
        assert (result.accepted, result.inserted, result.replaced) == (1, 0, 1)
        assert result.changes == {f"{iot.domain}/Patient/{account}": {"ReadingSeries"}}

    put(old + 7)
    after = _snapshot(driver, iot.domain)
    assert after["readings"] == before["readings"]
    assert after["buckets"] == before["buckets"]
    assert math.isclose(float(after["total"]), float(before["total"]) + 7)  # type: ignore[arg-type]
    put(old)
    assert _snapshot(driver, iot.domain) == before


@pytest.mark.parametrize("every", ["HOUR", "DAY", "WEEK"])
def test_trend_matches_python_over_the_raw_input(
    iot: LoadedIot, driver: neo4j.Driver, every: str
) -> None:
    expected = expected_readings(iot.out / "readings.ndjson")
    access = ReadingAccess.for_driver(driver, ADMIN)
    for metric in ("heart_rate", "bp_systolic"):
        account, device, _ = next(k for k in sorted(expected) if k[2] == metric)
        values = expected[(account, device, metric)]
        since, until = min(values) + 5 * 3600 + 17, max(values) - 3 * 3600
        points = access.trend([_series_uid(iot, device, metric)], since, until, every)
        width, origin = PERIOD_SECONDS[every], PERIOD_ORIGIN[every]
        lo = since - (since - origin) % width
        hi = until + (-(until - origin)) % width
        want = python_trend(values, lo, hi, width, origin)
        assert [(p.start, p.count, p.min, p.max) for p in points] == [w[:4] for w in want]
        for p, w in zip(points, want, strict=True):
            assert math.isclose(p.mean, w[4], rel_tol=1e-9)
            assert math.isclose(p.stddev, w[5], rel_tol=1e-6, abs_tol=1e-6)


def test_window_pages_through_exactly_the_readings_in_range(
    iot: LoadedIot, driver: neo4j.Driver
) -> None:
    expected = expected_readings(iot.out / "readings.ndjson")
    account, device, metric = next(k for k in sorted(expected) if k[2] == "heart_rate")
    values = expected[(account, device, metric)]
    since, until = min(values) + 3600 * 7 + 1234, min(values) + 3600 * 30 + 59
    series = [_series_uid(iot, device, metric), f"{iot.domain}/Series/none/heart_rate"]
    access = ReadingAccess.for_driver(driver, ADMIN)
    got: list[tuple[int, float]] = []
    after = None
    while True:
        page = access.window(series, since, until, 700, after)
        got += [(t, v) for _, t, v in page]
        if len(page) < 700:
            break
        after = (page[-1][1], page[-1][0])
    want = sorted((t, v) for t, v in values.items() if since <= t < until)
    assert got == want
    assert len(want) > 1000


def test_readings_of_an_unknown_account_are_rejected_with_their_line(
    iot: LoadedIot, driver: neo4j.Driver, tmp_path: Path
) -> None:
    path = tmp_path / "readings-late.ndjson"
    path.write_text(
        '{"account":"nobody","device":"d1","metric":"heart_rate",'
        '"time":"2025-12-30T10:00:00Z","value":70,"unit":"/min"}\n'
        '{"account":"nobody","device":"d1","metric":"heart_rate",'
        '"time":"2025-12-30T10:00:00Z","value":"x","unit":"/min"}\n'
    )
    report = load_readings(driver, [path], vendor=iot.vendor, quarantine_dir=tmp_path / "q")
    assert not report.ok
    assert report.rejected == 2
    assert report.readings.accepted == 0
    assert report.quarantine_file is not None
    lines = report.quarantine_file.read_text().splitlines()
    assert f"{path}:1" in lines[1]
    assert "unknown account 'nobody'" in lines[1]
    assert f"{path}:2" in lines[0]
    assert "is not a number" in lines[0]
    records, _, _ = driver.execute_query(
        "MATCH (n {sourceDomain: $d}) WHERE n.uid CONTAINS '/nobody' OR n.uid CONTAINS '/d1/' "
        "RETURN count(n) AS n",
        d=iot.domain,
    )
    assert records[0]["n"] == 0


def test_only_devices_and_admins_ingest_and_patients_cannot_read(driver: neo4j.Driver) -> None:
    reading = Reading("nobody", "a", "d", METRICS["spo2"], 0, 97.0)
    for role in (Role.CLINICIAN, Role.PATIENT, Role.NONE):
        with pytest.raises(AccessDeniedError):
            ReadingAccess.for_driver(driver, Principal("t", role)).ingest([reading])
    with pytest.raises(AccessDeniedError):
        ReadingAccess.for_driver(driver, Principal("t", Role.DEVICE)).series(["p"])
    assert ReadingAccess.for_driver(driver, Principal("t", Role.DEVICE)).ingest([]).accepted == 0


def test_a_device_reporting_under_another_account_is_refused(
    iot: LoadedIot, driver: neo4j.Driver
) -> None:
    expected = expected_readings(iot.out / "readings.ndjson")
    (a, device, metric), (b, *_) = sorted({k[0]: k for k in expected}.values())[:2]
    before = _snapshot(driver, iot.domain)
    stray = Reading(iot.vendor, b, device, METRICS[metric], 1_767_000_000, 80.0)
    result = write_readings(driver, [stray])
    assert (result.accepted, result.conflicts, result.orphans) == (0, [0], [])
    assert _snapshot(driver, iot.domain) == before
    records, _, _ = driver.execute_query(
        "MATCH (s:ReadingSeries {uid: $uid})-[:ABOUT]->(r:Patient) RETURN collect(r.uid) AS r",
        uid=_series_uid(iot, device, metric),
    )
    assert records[0]["r"] == [f"{iot.domain}/Patient/{a}"]
