"""A tiny two-clinic ecosystem written with the real graph writer, for change-feed tests.

Clinic A and clinic B each hold Patient records (``<domain>/Patient/<id>``, ``IN_DOMAIN``).
Person ``p1`` has a record in both clinics, ``p2`` only in B, and record ``a3`` in A is not
linked to anyone yet. Linking is the MPI's job; here the links are written explicitly, as test
data. Everything carries unique ids and is removed by :meth:`Ecosystem.remove`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import neo4j

from graph.writer import write_batch
from ontology.model import DomainKind, Label, RelType
from ontology.records import GraphBatch
from tests.conftest import purge_domains


@dataclass(frozen=True)
class Ecosystem:
    tag: str
    clinic_a: str
    clinic_b: str
    p1: str
    p2: str
    a1: str  # p1's record in A
    b1: str  # p1's record in B
    b2: str  # p2's record in B
    a3: str  # a record in A nobody has linked yet

    @property
    def domains(self) -> list[str]:
        return [self.clinic_a, self.clinic_b]

    def add_observation(self, driver: neo4j.Driver, record: str, code: str) -> str:
        """A real fact written under ``record`` (as a load would); returns its uid."""
        domain = record.split("/Patient/")[0]
        uid = f"{domain}/Observation/{uuid.uuid4().hex[:8]}"
        batch = GraphBatch()
        batch.node(
            Label.OBSERVATION,
            uid,
            {
                "sourceDomain": domain,
                "sourceRecordId": uid.rsplit("/", 1)[1],
                "date": datetime.now(UTC),
                "code": code,
                "value": 120.0,
            },
        )
        batch.rel(RelType.ABOUT, (Label.OBSERVATION, uid), (Label.PATIENT, record))
        stats = write_batch(driver, batch)
        assert not stats.dangling
        return uid

    def link(self, driver: neo4j.Driver, record: str, person: str) -> None:
        batch = GraphBatch()
        batch.rel(RelType.RECORD_OF, (Label.PATIENT, record), (Label.PERSON, person))
        assert not write_batch(driver, batch).dangling

    def remove(self, driver: neo4j.Driver) -> None:
        driver.execute_query(
            "MATCH (w:Webhook)-[:WATCHES]->(d:Domain) WHERE d.uid IN $d "
            "OPTIONAL MATCH (w)<-[:VIA]-(dl:WebhookDelivery) DETACH DELETE w, dl",
            d=self.domains,
        )
        driver.execute_query(
            "MATCH (e:ChangeEvent) WHERE e.domain IN $d "
            "OPTIONAL MATCH (e)<-[:DELIVERS]-(dl:WebhookDelivery) DETACH DELETE e, dl",
            d=self.domains,
        )
        driver.execute_query(
            "MATCH (p:Person) WHERE p.uid IN $p DETACH DELETE p", p=[self.p1, self.p2]
        )
        purge_domains(driver, *self.domains)


def build_ecosystem(driver: neo4j.Driver) -> Ecosystem:
    tag = uuid.uuid4().hex[:8]
    a, b = f"mis:feed-{tag}-a", f"mis:feed-{tag}-b"
    eco = Ecosystem(
        tag=tag,
        clinic_a=a,
        clinic_b=b,
        p1=f"person:feed-{tag}-1",
        p2=f"person:feed-{tag}-2",
        a1=f"{a}/Patient/1",
        b1=f"{b}/Patient/1",
        b2=f"{b}/Patient/2",
        a3=f"{a}/Patient/3",
    )
    batch = GraphBatch()
    for domain in eco.domains:
        batch.node(Label.DOMAIN, domain, {"name": domain, "kind": DomainKind.MIS.value})
    for person, family in ((eco.p1, "Ivanova"), (eco.p2, "Petrov")):
        batch.node(Label.PERSON, person, {"name": f"Test {family}", "family": family})
    links: list[tuple[str, str | None]] = [
        (eco.a1, eco.p1),
        (eco.b1, eco.p1),
        (eco.b2, eco.p2),
        (eco.a3, None),
    ]
    for record, linked in links:
        domain = record.split("/Patient/")[0]
        batch.node(
            Label.PATIENT,
            record,
            {"recordId": record.rsplit("/", 1)[1], "sourceDomain": domain, "name": record},
        )
        batch.rel(RelType.IN_DOMAIN, (Label.PATIENT, record), (Label.DOMAIN, domain))
        if linked:
            batch.rel(RelType.RECORD_OF, (Label.PATIENT, record), (Label.PERSON, linked))
    stats = write_batch(driver, batch)
    assert not stats.dangling
    return eco
