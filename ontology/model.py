"""The closed vocabulary of the graph: every node label and relationship type medshadow writes.

Each member names a class (labels) or an object property (relationship types) of the OWL
ontology in ``medshadow.ttl``; ``tests/ontology/test_model.py`` fails when the two drift. Cypher
builders interpolate labels and types only from these enums, never from input.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

ONTOLOGY_PATH = Path(__file__).with_name("medshadow.ttl")
NAMESPACE = "https://w3id.org/medshadow/ontology#"


class Label(StrEnum):
    PERSON = "Person"
    PATIENT = "Patient"
    DOMAIN = "Domain"
    ORGANIZATION = "Organization"
    PRACTITIONER = "Practitioner"
    ENCOUNTER = "Encounter"
    CONDITION = "Condition"
    OBSERVATION = "Observation"
    MEDICATION_REQUEST = "MedicationRequest"
    MEDICATION_STATEMENT = "MedicationStatement"
    SUBSTANCE = "Substance"
    ALLERGY_INTOLERANCE = "AllergyIntolerance"
    PROCEDURE = "Procedure"
    IMMUNIZATION = "Immunization"
    DIAGNOSTIC_REPORT = "DiagnosticReport"
    DOCUMENT = "Document"
    DEVICE = "Device"
    CARE_PLAN = "CarePlan"
    CONCEPT = "Concept"
    CONSENT = "Consent"
    ALERT = "Alert"
    RISK_ASSESSMENT = "RiskAssessment"
    CARE_GAP = "CareGap"
    DATA_REQUEST = "DataRequest"
    MATCH_CANDIDATE = "MatchCandidate"
    LINK_DECISION = "LinkDecision"
    LINKAGE_MODEL = "LinkageModel"
    READING_SERIES = "ReadingSeries"
    READING_BUCKET = "ReadingBucket"
    PREFERENCE = "Preference"
    CHANGE_EVENT = "ChangeEvent"
    CHANGE_FEED = "ChangeFeed"  # the outbox head: its lock numbers ChangeEvents in commit order
    WEBHOOK = "Webhook"
    WEBHOOK_DELIVERY = "WebhookDelivery"
    CODE_SYSTEM = "CodeSystem"  # one version of a terminology (terminology/)
    MAPPING = "Mapping"  # a local code's mapping onto a target system: suggestions + curation
    MAPPING_CHANGE = "MappingChange"  # one entry of a mapping's history (append-only)
    CONCEPT_MAP = "ConceptMap"  # a published, versioned set of approved mappings
    DRUG_INTERACTION = "DrugInteraction"  # a curated interaction of a knowledge base (drugs/)
    INTERACTION_STATEMENT = "InteractionStatement"  # an interaction sentence mined from text
    APP = "App"  # a registered third-party app (open API)
    AUTH_CODE = "AuthCode"  # a one-time OAuth authorisation code
    AUDIT_EVENT = "AuditEvent"  # one access to personal data (append-only, hash-chained)
    AUDIT_HEAD = "AuditHead"  # the audit chain's head

    @property
    def iri(self) -> str:
        return NAMESPACE + self.value


class RelType(StrEnum):
    RECORD_OF = "RECORD_OF"  # Patient (a domain's record) -> Person (master identity)
    IN_DOMAIN = "IN_DOMAIN"  # Patient -> Domain holding the record
    OPERATED_BY = "OPERATED_BY"  # Domain -> Organization running it
    ABOUT = "ABOUT"  # clinical fact -> Patient record it was recorded under
    CODED_AS = "CODED_AS"  # fact -> Concept
    DURING = "DURING"  # fact -> Encounter it was recorded in
    SERVICE_PROVIDER = "SERVICE_PROVIDER"  # Encounter -> Organization
    PERFORMED_BY = "PERFORMED_BY"  # Encounter -> Practitioner
    WORKS_FOR = "WORKS_FOR"  # Practitioner -> Organization
    HAS_COMPONENT = "HAS_COMPONENT"  # Observation -> component Observation
    HAS_RESULT = "HAS_RESULT"  # DiagnosticReport -> Observation
    IS_A = "IS_A"  # Concept -> broader Concept
    CANDIDATE = "CANDIDATE"  # MatchCandidate -> each of its two Patient records
    DECIDES = "DECIDES"  # LinkDecision -> MatchCandidate
    CONCERNS = "CONCERNS"  # LinkDecision -> Patient record linked / unlinked
    IN_SERIES = "IN_SERIES"  # ReadingBucket -> ReadingSeries
    MEASURED_BY = "MEASURED_BY"  # ReadingSeries -> Device
    CHANGED = "CHANGED"  # ChangeEvent -> Person
    WATCHES = "WATCHES"  # Webhook -> Domain that registered it
    DELIVERS = "DELIVERS"  # WebhookDelivery -> ChangeEvent
    VIA = "VIA"  # WebhookDelivery -> Webhook
    IN_VERSION = "IN_VERSION"  # Concept -> CodeSystem version it is a member of
    MAPS_TO = "MAPS_TO"  # Concept -> Concept of another system (a concept map's element)
    SOURCE_CONCEPT = "SOURCE_CONCEPT"  # Mapping -> the local Concept it maps
    TARGET_CONCEPT = "TARGET_CONCEPT"  # Mapping -> the target Concept currently chosen
    REVISES = "REVISES"  # MappingChange -> the Mapping it changed
    FOR_PERSON = "FOR_PERSON"  # shadow artifact (care gap, alert, ...) -> the Person it concerns
    INTERACTANT = "INTERACTANT"  # DrugInteraction -> substance or class Concept it names
    HAS_INGREDIENT = "HAS_INGREDIENT"  # medication Concept -> substance Concept it contains
    HAS_CONSENT = "HAS_CONSENT"  # Person -> Consent they gave

    @property
    def iri(self) -> str:
        return NAMESPACE + _camel(self.value)


class DomainKind(StrEnum):
    """Kinds of ecosystem domain; individuals of the ontology's ``DomainKind`` class."""

    MIS = "MIS"
    PORTAL = "PORTAL"
    IOT_CLOUD = "IOT_CLOUD"
    SOCIAL_CHANNEL = "SOCIAL_CHANNEL"
    RESEARCH_BANK = "RESEARCH_BANK"


#: Labels of clinical facts: nodes that hang off a Patient record through ABOUT and carry
#: provenance (``sourceDomain``, ``sourceRecordId``).
FACT_LABELS: frozenset[Label] = frozenset(
    {
        Label.ENCOUNTER,
        Label.CONDITION,
        Label.OBSERVATION,
        Label.MEDICATION_REQUEST,
        Label.MEDICATION_STATEMENT,
        Label.ALLERGY_INTOLERANCE,
        Label.PROCEDURE,
        Label.IMMUNIZATION,
        Label.DIAGNOSTIC_REPORT,
        Label.DOCUMENT,
        Label.DEVICE,
        Label.CARE_PLAN,
        Label.PREFERENCE,
    }
)


def _camel(rel: str) -> str:
    """``SERVICE_PROVIDER`` -> ``serviceProvider`` (OWL object property naming)."""
    head, *rest = rel.lower().split("_")
    return head + "".join(part.capitalize() for part in rest)
