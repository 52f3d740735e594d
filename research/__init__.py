"""The research data bank: de-identified exports of consenting patients (OMOP CDM, FHIR bulk)."""
