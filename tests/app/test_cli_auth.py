"""``medshadow auth …`` as an operator runs it, against the session's Neo4j."""

from __future__ import annotations

from pathlib import Path

import neo4j

from access.policy import Role
from access.tokens import Authenticator, IssuerConfig
from graph.consent import append_audit
from tests.conftest import run_cli


def test_token_is_signed_by_the_data_dirs_issuer(neo4j_uri: str, tmp_path: Path) -> None:
    done = run_cli(
        ["auth", "token", "--role", "practitioner", "--subject", "dr-x", "--org", "mis:a"],
        neo4j_uri,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    config = IssuerConfig("medshadow", "medshadow", tmp_path / "data" / "auth" / "issuer-key.pem")
    principal = Authenticator(config).principal(done.stdout.strip())
    assert (principal.subject, principal.role, principal.organisation) == (
        "dr-x",
        Role.CLINICIAN,
        "mis:a",
    )
    bad = run_cli(["auth", "token", "--role", "overlord", "--subject", "x"], neo4j_uri, tmp_path)
    assert bad.returncode == 2
    assert "unknown role 'overlord'" in bad.stderr


def test_access_log_and_audit_verification(
    neo4j_uri: str, tmp_path: Path, driver: neo4j.Driver
) -> None:
    from datetime import UTC, datetime

    append_audit(
        driver,
        [
            {
                "at": datetime.now(UTC),
                "actor": "dr-cli",
                "role": "clinician",
                "person": "person:cli",
                "action": "read",
                "what": "Condition",
                "purpose": "treatment",
                "outcome": "allowed",
                "basis": "implied:treatment",
                "breakGlass": False,
                "request": "req:cli",
            },
        ],
    )
    log = run_cli(["auth", "access-log", "person:cli"], neo4j_uri, tmp_path)
    assert log.returncode == 0, log.stderr
    assert "dr-cli" in log.stderr
    assert "implied:treatment" in log.stderr
    verified = run_cli(["auth", "verify-audit"], neo4j_uri, tmp_path)
    assert verified.returncode == 0, verified.stderr
    assert " 0 problems" in verified.stderr
    driver.execute_query("MATCH (e:AuditEvent {actor: 'dr-cli'}) SET e.what = 'nothing'")
    try:
        broken = run_cli(["auth", "verify-audit"], neo4j_uri, tmp_path)
        assert broken.returncode == 1
        assert "content changed after it was written" in broken.stderr
    finally:
        driver.execute_query("MATCH (e:AuditEvent {actor: 'dr-cli'}) SET e.what = 'Condition'")
