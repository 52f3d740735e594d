"""``medshadow research export``: the de-identified research data bank."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from app.settings import Settings

research_app = typer.Typer(no_args_is_help=True, help="The de-identified research data bank")
console = Console(stderr=True)


@research_app.command("export")
def research_export(
    out: Annotated[Path, typer.Option(help="folder for omop/, fhir/ and report.json")],
    k: Annotated[int, typer.Option(help="k-anonymity: persons per quasi-identifier class")] = 5,
    fmt: Annotated[str, typer.Option("--format", help="omop, fhir or both")] = "both",
    shift_days: Annotated[int, typer.Option(help="per-person date shift range (±days)")] = 180,
) -> None:
    """Export consenting persons, de-identified, as OMOP CDM CSV and FHIR bulk NDJSON."""
    from access.policy import Principal, Role
    from access.research import ResearchAccess
    from app.cli import connected
    from app.progress import progress_bar

    formats = ("omop", "fhir") if fmt == "both" else (fmt,)
    settings = Settings()
    with connected(settings) as driver:
        access = ResearchAccess(
            driver, Principal("operator", Role.RESEARCHER), database=settings.neo4j.database
        )
        with progress_bar("reading consenting persons", console, "persons") as bar:
            task = bar.add_task("export", total=None)

            def step(done: int, total: int) -> None:
                bar.update(task, total=total, completed=done)

            try:
                report = access.export(out, k=k, formats=formats, shift_days=shift_days,
                                       progress=step)  # fmt: skip
            except ValueError as e:
                console.print(f"[red]error:[/red] {e}")
                raise typer.Exit(2) from e
    table = Table(title=f"research export {report.export_id}")
    table.add_column("")
    table.add_column("value", justify="right")
    for label, value in (
        ("persons with a research consent", report.consenting),
        ("exported", report.exported),
        ("suppressed (class below k)", report.suppressed),
        ("k requested / achieved", f"{report.k_requested} / {report.k_achieved}"),
        ("equivalence classes", report.classes),
        ("generalisation levels", ", ".join(f"{a}={n}" for a, n in report.levels.items())),
        ("facts released / withheld by consent",
         f"{report.facts_released} / {report.facts_withheld_by_consent}"),
        ("date shift", f"±{report.date_shift_days} days per person"),
        *((f"omop {t}", n) for t, n in report.omop.items()),
        *((f"fhir {t}", n) for t, n in report.fhir.items()),
    ):  # fmt: skip
        table.add_row(label, str(value))
    console.print(table)
    console.print(f"written to {out} (report.json alongside)")
