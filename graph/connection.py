"""Opening the driver: the only place a Neo4j connection is made."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import neo4j

from graph.errors import GraphError

#: The driver type, re-exported so code outside graph/ can annotate without importing neo4j.
Driver = neo4j.Driver


def open_driver(uri: str, user: str, password: str | None) -> neo4j.Driver:
    """Connect and verify, so a wrong URI or password fails at start-up with a clear message."""
    auth = (user, password) if password else None
    # "Label does not exist" notices are noise on a fresh database, not a fault.
    driver = neo4j.GraphDatabase.driver(
        uri,
        auth=auth,
        notifications_disabled_classifications=[
            neo4j.NotificationDisabledClassification.UNRECOGNIZED
        ],
    )
    try:
        driver.verify_connectivity()
    except (neo4j.exceptions.ServiceUnavailable, neo4j.exceptions.AuthError) as e:
        driver.close()
        raise GraphError(f"cannot reach Neo4j at {uri}: {e}") from e
    return driver


def native(value: Any) -> Any:
    """A Neo4j temporal as its Python value (anything else unchanged)."""
    return value.to_native() if hasattr(value, "to_native") else value


def plain(row: Mapping[str, Any]) -> dict[str, Any]:
    """A map read from the graph with its temporals as Python values."""
    return {k: native(v) for k, v in row.items()}


def run_read(
    driver: neo4j.Driver, query: str, params: Mapping[str, Any], database: str | None = None
) -> list[neo4j.Record]:
    """One auto-committed read, routed to a reader (values only as parameters)."""
    records, _, _ = driver.execute_query(
        neo4j.Query(query), dict(params), routing_=neo4j.RoutingControl.READ, database_=database
    )
    return records


def run_write(
    driver: neo4j.Driver, query: str, params: Mapping[str, Any], database: str | None = None
) -> list[neo4j.Record]:
    """One auto-committed write, routed to the leader."""
    records, _, _ = driver.execute_query(
        neo4j.Query(query), dict(params), routing_=neo4j.RoutingControl.WRITE, database_=database
    )
    return records


def apoc_version(driver: neo4j.Driver) -> str | None:
    records, _, _ = driver.execute_query(
        "SHOW PROCEDURES YIELD name WHERE name = 'apoc.help' RETURN count(*) AS n",
        routing_=neo4j.RoutingControl.READ,
    )
    if not records or records[0]["n"] == 0:
        return None
    records, _, _ = driver.execute_query(
        "RETURN apoc.version() AS v", routing_=neo4j.RoutingControl.READ
    )
    return str(records[0]["v"])


def ping(driver: neo4j.Driver) -> str | None:
    """None when Neo4j answers, else the error's class name (never its text: it may hold data)."""
    try:
        driver.verify_connectivity()
    except (neo4j.exceptions.Neo4jError, neo4j.exceptions.DriverError) as e:
        return type(e).__name__
    return None
