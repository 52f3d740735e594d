"""Constraints and indexes, derived from the ontology and created idempotently at start-up."""

from __future__ import annotations

import neo4j

from graph.vectors import vector_schema_statements
from ontology.model import Label


def schema_statements() -> list[str]:
    statements = [
        f"CREATE CONSTRAINT {label.value.lower()}_uid IF NOT EXISTS "
        f"FOR (n:`{label.value}`) REQUIRE n.uid IS UNIQUE"
        for label in Label
    ]
    statements += [
        "CREATE INDEX patient_national_id IF NOT EXISTS FOR (n:Patient) ON (n.nationalId)",
        "CREATE INDEX person_national_id IF NOT EXISTS FOR (n:Person) ON (n.nationalId)",
        "CREATE INDEX concept_code IF NOT EXISTS FOR (n:Concept) ON (n.code)",
        "CREATE INDEX observation_date IF NOT EXISTS FOR (n:Observation) ON (n.date)",
        # a series' readings in a time range: an index range scan (graph/readings.py)
        "CREATE INDEX reading_bucket_series_start IF NOT EXISTS "
        "FOR (n:ReadingBucket) ON (n.series, n.start)",
        "CREATE FULLTEXT INDEX person_search IF NOT EXISTS "
        "FOR (n:Person) ON EACH [n.name, n.family, n.nationalId]",
        "CREATE FULLTEXT INDEX concept_search IF NOT EXISTS FOR (n:Concept) ON EACH [n.display]",
        # terminology (graph/terminology.py): displays and designations in any language
        "CREATE FULLTEXT INDEX concept_terms IF NOT EXISTS "
        "FOR (n:Concept) ON EACH [n.display, n.designationText]",
        "CREATE INDEX code_system_system IF NOT EXISTS FOR (n:CodeSystem) ON (n.system)",
        # the mapping engine's lexical candidates: names filtered by system inside Lucene
        # (``systemKey:http_snomed_info_sct AND (...)``), not after the global top hits
        "CREATE FULLTEXT INDEX concept_lexicon IF NOT EXISTS "
        "FOR (n:Concept) ON EACH [n.display, n.designationText, n.systemKey]",
        # change feed (graph/outbox.py): events by cursor, the webhook delivery queues
        "CREATE INDEX interaction_statement_pair IF NOT EXISTS "
        "FOR (n:InteractionStatement) ON (n.pairKey)",
        "CREATE INDEX change_event_seq IF NOT EXISTS FOR (n:ChangeEvent) ON (n.seq)",
        "CREATE INDEX audit_event_seq IF NOT EXISTS FOR (n:AuditEvent) ON (n.seq)",
        "CREATE INDEX audit_event_person IF NOT EXISTS FOR (n:AuditEvent) ON (n.person, n.seq)",
        "CREATE INDEX consent_person IF NOT EXISTS FOR (n:Consent) ON (n.person)",
        "CREATE INDEX consent_status_kind IF NOT EXISTS FOR (n:Consent) ON (n.status, n.kind)",
        "CREATE INDEX change_event_unlinked IF NOT EXISTS FOR (n:ChangeEvent) ON (n.unlinked)",
        "CREATE INDEX webhook_delivery_status IF NOT EXISTS FOR (n:WebhookDelivery) ON (n.status)",
        "CREATE INDEX webhook_delivery_queue IF NOT EXISTS "
        "FOR (n:WebhookDelivery) ON (n.webhookUid, n.seq)",
    ]
    statements += vector_schema_statements()  # concept embeddings (graph/vectors.py)
    return statements


def ensure_schema(driver: neo4j.Driver, *, database: str | None = None) -> None:
    """Create every constraint and index (a no-op for those that exist) and wait for them."""
    for statement in schema_statements():
        driver.execute_query(statement, database_=database)
    driver.execute_query("CALL db.awaitIndexes(300)", database_=database)
