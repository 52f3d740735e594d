"""Community posts: generated from the sample ecosystem, parsed, loaded into the real Neo4j."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import neo4j
import pytest

from app.channels import load_social
from loaders import person_view as pv
from loaders.patient_record import slug
from loaders.social import community_domain, parse_paths
from loaders.social_gen import COMMUNITIES, GROUND_TRUTH_SOCIAL, generate_social
from ontology.model import Label, RelType
from tests.conftest import purge_domains


def _one(driver: neo4j.Driver, query: str, **params: Any) -> Any:
    records, _, _ = driver.execute_query(query, params)
    return records[0][0]


@pytest.fixture(scope="module")
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:6]} "


@pytest.fixture(scope="module")
def export(sample_domains: Path, tmp_path_factory: pytest.TempPathFactory, prefix: str) -> Path:
    out = tmp_path_factory.mktemp("social-export")
    report = generate_social(sample_domains, out, seed=5, fraction=0.8, community_prefix=prefix)
    assert report.posts > report.authors >= 3
    return out


def _lines(export: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for path in sorted(export.glob("*.ndjson"))
        for line in path.read_text().splitlines()
    ]


@pytest.fixture
def domains(driver: neo4j.Driver, prefix: str) -> Iterator[list[str]]:
    uids = [community_domain(prefix + c.name) for c in COMMUNITIES] + [
        community_domain(prefix + "bad lines")
    ]

    def drop() -> None:
        purge_domains(driver, *uids)

    drop()
    yield uids
    drop()


def test_generator_is_deterministic_and_fits_the_persons_conditions(
    sample_domains: Path, tmp_path: Path, export: Path, prefix: str
) -> None:
    again = tmp_path / "again"
    generate_social(sample_domains, again, seed=5, fraction=0.8, community_prefix=prefix)
    for path in export.iterdir():
        assert (again / path.name).read_bytes() == path.read_bytes(), path.name

    persons = {p.pid: p for p in pv.read_persons(sample_domains)}
    truth = json.loads((export / GROUND_TRUTH_SOCIAL).read_text())
    by_name = {prefix + c.name: c for c in COMMUNITIES}
    threads: dict[str, set[str]] = {}
    for line in _lines(export):
        community = by_name[line["community"]]
        author = f"{community_domain(line['community'])}/Patient/{line['author']['handle']}"
        person = persons[truth[author]]
        if community.words and "inReplyTo" not in line:  # an opener: about the author's life
            assert person.has_condition(*community.words), (line["text"], community.name)
        threads.setdefault(line["thread"], set()).add(line["id"])
        if "inReplyTo" in line:
            assert line["inReplyTo"] in threads[line["thread"]]  # replies follow their parent
    # Members answer each other: some replies come from someone else than the opener's author.
    authors = {line["id"]: line["author"]["handle"] for line in _lines(export)}
    assert any(
        authors[line["inReplyTo"]] != line["author"]["handle"]
        for line in _lines(export)
        if "inReplyTo" in line
    )


def test_parse_stores_posts_verbatim_about_their_author(export: Path) -> None:
    lines = {line["id"]: line for line in _lines(export)}
    units = list(parse_paths([export]))
    assert all(not u.quarantined for u in units)
    docs = [n for u in units for n in u.batch.node_rows() if n.label is Label.DOCUMENT]
    assert len(docs) == len(lines)
    about = {r.start: r.end for u in units for r in u.batch.rel_rows() if r.type is RelType.ABOUT}
    for doc in docs:
        line = lines[doc.props["recordId"]]
        assert doc.props["text"] == line["text"]
        assert doc.props["documentKind"] == line["kind"]
        assert doc.props["patientReported"] is True
        assert doc.props["thread"] == line["thread"]
        assert doc.props.get("inReplyTo") == line.get("inReplyTo")
        domain = community_domain(line["community"])
        assert doc.props["sourceDomain"] == domain
        assert about[doc.uid] == f"{domain}/Patient/{line['author']['handle']}"
    records = [n for u in units for n in u.batch.node_rows() if n.label is Label.PATIENT]
    assert {r.uid for r in records} == set(json.loads((export / GROUND_TRUTH_SOCIAL).read_text()))
    assert not any(n.label is Label.PERSON for u in units for n in u.batch.node_rows())


def test_load_links_posts_to_authors_and_reload_is_idempotent(
    driver: neo4j.Driver, export: Path, domains: list[str], tmp_path: Path
) -> None:
    first = load_social(driver, [export], quarantine_dir=tmp_path)
    assert first.ok, first.reasons
    lines = _lines(export)
    assert _one(
        driver,
        "MATCH (d:Document)-[:ABOUT]->(r:Patient)-[:IN_DOMAIN]->(x:Domain) "
        "WHERE x.uid IN $d AND x.kind = 'SOCIAL_CHANNEL' AND d.text IS NOT NULL "
        "RETURN count(d)",
        d=domains,
    ) == len(lines)
    sample = lines[0]
    uid = f"{community_domain(sample['community'])}/Document/{sample['id']}"
    row = driver.execute_query(
        "MATCH (d:Document {uid: $u})-[:ABOUT]->(r:Patient) RETURN d.text AS text, r.handle AS h",
        u=uid,
    ).records[0]
    assert row["text"] == sample["text"]
    assert row["h"] == sample["author"]["handle"]
    assert len(first.changes) == len(json.loads((export / GROUND_TRUTH_SOCIAL).read_text()))

    nodes = _one(driver, "MATCH (n) WHERE n.sourceDomain IN $d RETURN count(n)", d=domains)
    second = load_social(driver, [export], quarantine_dir=tmp_path)
    assert second.ok
    assert sum(second.write.nodes_created.values()) == 0
    assert sum(second.write.rels_created.values()) == 0
    assert _one(driver, "MATCH (n) WHERE n.sourceDomain IN $d RETURN count(n)", d=domains) == nodes


def test_bad_lines_are_quarantined_the_rest_loads(
    driver: neo4j.Driver, domains: list[str], prefix: str, tmp_path: Path
) -> None:
    community = prefix + "bad lines"
    good = {
        "id": "g1",
        "community": community,
        "author": {"handle": "ann_l", "displayName": "Ann Lee", "gender": "female"},
        "time": "2025-03-01T10:00:00Z",
        "text": "Glucose 182 after dinner, is that bad?",
        "thread": "t1",
    }
    path = tmp_path / "posts.ndjson"
    path.write_text(
        "\n".join(
            [
                json.dumps(good),
                json.dumps({**good, "id": "b1", "text": ""}),
                json.dumps({**good, "id": "b2", "author": {"displayName": "no handle"}}),
                "[1, 2",
                json.dumps({**good, "id": "b3", "time": "yesterday"}),
                json.dumps({**good, "id": "g2", "kind": "message", "inReplyTo": "g1"}),
            ]
        )
        + "\n"
    )
    report = load_social(driver, [path], quarantine_dir=tmp_path / "q")
    assert report.quarantined == 4
    assert report.quarantine_file is not None
    rows = {
        json.loads(line)["location"]: json.loads(line)["reason"]
        for line in report.quarantine_file.read_text().splitlines()
    }
    assert rows[f"{path}:2#text"].startswith("text: ")
    assert rows[f"{path}:3#author.handle"].startswith("author.handle: ")
    assert rows[f"{path}:4"].startswith("malformed JSON")
    assert rows[f"{path}:5#time"].startswith("time: ")
    domain = community_domain(community)
    assert domain == f"social:{slug(community)}"
    posts = driver.execute_query(
        "MATCH (d:Document {sourceDomain: $d})-[:ABOUT]->(r:Patient) "
        "RETURN d.recordId AS id, d.documentKind AS kind, d.inReplyToUid AS parent, "
        "r.given AS given, r.family AS family ORDER BY id",
        d=domain,
    ).records
    assert [(p["id"], p["kind"]) for p in posts] == [("g1", "post"), ("g2", "message")]
    assert posts[1]["parent"] == f"{domain}/Document/g1"
    assert posts[0]["given"] == ["Ann"]
    assert posts[0]["family"] == "Lee"
