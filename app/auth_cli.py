"""``medshadow auth …``: tokens of the built-in issuer, the audit trail's integrity and log."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from app.settings import Settings
from graph.connection import Driver

auth_app = typer.Typer(no_args_is_help=True, help="Tokens, consent audit trail")
console = Console(stderr=True)


def _connected(settings: Settings) -> AbstractContextManager[Driver]:
    from app.cli import connected  # app.cli registers this module's commands: import late

    return connected(settings)


@auth_app.command("token")
def auth_token(
    role: Annotated[
        str,
        typer.Option(
            help="practitioner, patient, steward, terminologist, "
            "researcher, integrator, device, admin"
        ),
    ],
    subject: Annotated[str, typer.Option(help="who the token stands for")],
    organisation: Annotated[
        str | None, typer.Option("--org", help="a practitioner's clinic (domain uid)")
    ] = None,
    patient: Annotated[str | None, typer.Option(help="a patient's person uid")] = None,
    account: Annotated[str | None, typer.Option(help="a patient's portal account")] = None,
    ttl: Annotated[int | None, typer.Option(help="lifetime in seconds")] = None,
) -> None:
    """Print a signed access token of the built-in issuer (key in <data_dir>/auth)."""
    from access.tokens import TokenError
    from app.auth import authenticator

    settings = Settings()
    try:
        token = authenticator(settings).issue(
            subject=subject,
            role=role,
            organisation=organisation,
            patient=patient,
            account=account,
            ttl_s=ttl,
        )
    except TokenError as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from e
    print(token)


@auth_app.command("verify-audit")
def verify_audit() -> None:
    """Recompute the audit trail's hash chain; exit 1 when a row was changed or removed."""
    from graph.consent import verify_audit_chain

    settings = Settings()
    with _connected(settings) as driver:
        checked, problems = verify_audit_chain(driver, database=settings.neo4j.database)
    for problem in problems:
        console.print(f"[red]{problem}[/red]")
    console.print(f"{checked} audit events checked, {len(problems)} problems")
    if problems:
        raise typer.Exit(1)


@auth_app.command("access-log")
def access_log(
    person: Annotated[str, typer.Argument(help="person uid")],
    first: Annotated[int, typer.Option(help="newest events shown")] = 50,
) -> None:
    """Who read or changed a person's data (operators; patients see theirs in the UI)."""
    from graph.consent import audit_events

    settings = Settings()
    with _connected(settings) as driver:
        rows = audit_events(driver, person=person, limit=first, database=settings.neo4j.database)
    table = Table(title=f"access log of {person}")
    for column in ("when", "who", "role", "action", "what", "purpose", "outcome", "basis"):
        table.add_column(column)
    for e in rows:
        flag = " [red]break-glass[/red]" if e.get("breakGlass") else ""
        table.add_row(
            str(e["at"])[:19],
            str(e["actor"]) + (f" @ {e['organisation']}" if e.get("organisation") else ""),
            str(e["role"]),
            str(e["action"]) + flag,
            str(e.get("what") or ""),
            str(e.get("purpose") or ""),
            str(e["outcome"]),
            str(e.get("basis") or e.get("reason") or ""),
        )
    console.print(table)
