"""Graph-layer errors; all derive from :class:`GraphError` and chain their cause."""

from __future__ import annotations


class GraphError(Exception):
    """Root of everything the graph layer raises."""


class EmbeddedNeo4jError(GraphError):
    """The embedded Neo4j could not be started, found or stopped."""


class UnsafeQueryError(GraphError):
    """A generated query was refused because it is not read-only."""
