"""Errors raised by the ontology package."""

from __future__ import annotations


class OntologyError(Exception):
    """Something does not fit the ontology, or the ontology itself cannot be read or reasoned over.

    Raised for a node label or relationship type outside the ontology, a property that cannot be
    expressed in RDF, an unreadable ``medshadow.ttl``, or a missing Java runtime for HermiT.
    """
