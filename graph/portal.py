"""Reads the portal's writes need: the account a write goes to, and the item just written."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import neo4j

from ontology.model import FACT_LABELS, DomainKind, Label

PORTAL_ACCOUNT = """
MATCH (r:Patient {uid: $uid})-[:IN_DOMAIN]->(d:Domain {kind: $kind})
RETURN r.recordId AS recordId, d.uid AS domain, [(r)-[:RECORD_OF]->(p:Person) | p.uid][0] AS person
"""

# Same row shape as graph.reader's fact queries, so resolvers build the same GraphQL types.
_FACTS_BY_UID = """
UNWIND $uids AS uid
MATCH (f:`{label}` {{uid: uid}})-[:ABOUT]->(r:Patient)-[:IN_DOMAIN]->(d:Domain)
RETURN r.uid AS uid, f {{ .* }} AS fact, d {{ .uid, .name, .kind }} AS domain,
       [(f)-[c:CODED_AS]->(k:Concept) | k {{ .system, .code, .display, rank: c.rank }}] AS codes,
       [] AS components
"""


@dataclass(frozen=True, slots=True)
class PortalAccount:
    uid: str
    record_id: str
    domain: str
    person: str | None = None  # the master person the account is linked to


def portal_account(
    driver: neo4j.Driver, uid: str, *, database: str | None = None
) -> PortalAccount | None:
    """The portal account (a PORTAL domain's Patient record) with this uid, if there is one."""
    records, _, _ = driver.execute_query(
        PORTAL_ACCOUNT,
        {"uid": uid, "kind": DomainKind.PORTAL.value},
        routing_=neo4j.RoutingControl.READ,
        database_=database,
    )
    if not records:
        return None
    row = records[0]
    return PortalAccount(uid, str(row["recordId"]), str(row["domain"]), row["person"])


def facts_by_uid_query(label: Label) -> str:
    if label not in FACT_LABELS:
        raise ValueError(f"{label} is not a clinical fact label")
    return _FACTS_BY_UID.format(label=Label(label).value)


def facts_by_uid(
    driver: neo4j.Driver, label: Label, uids: Sequence[str], *, database: str | None = None
) -> list[dict[str, Any]]:
    # Read back what a write just committed: from the writer, so a cluster's lagging
    # follower cannot answer "not there" (the write's session shares no bookmarks with this).
    records, _, _ = driver.execute_query(
        facts_by_uid_query(label),
        {"uids": list(uids)},
        routing_=neo4j.RoutingControl.WRITE,
        database_=database,
    )
    return [dict(r) for r in records]
