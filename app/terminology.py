"""``medshadow terminology load``: parse the code system sources, write them, report."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from access.policy import Principal, Role
from access.terminology import TerminologyAccess
from app.mapping import mapping_engine
from app.progress import progress_bar
from app.settings import Settings
from graph.connection import Driver
from graph.schema import ensure_schema
from graph.terminology import TerminologyLoad
from terminology.model import ParsedSystem
from terminology.sources import parse

#: The CLI acts as a terminologist: it loads what its operator asks for.
CLI_PRINCIPAL = Principal("cli", Role.TERMINOLOGIST)


def load_terminology(
    settings: Settings, driver: Driver, names: Sequence[str], console: Console
) -> bool:
    """Load the named sources (all when empty) with a progress bar; True when nothing was off."""
    ensure_schema(driver, database=settings.neo4j.database)
    with console.status("parsing sources…"):
        systems: list[ParsedSystem] = list(parse(list(names)))
    total = sum(1 + 2 * len(s.concepts) + sum(len(c.parents) for c in s.concepts) for s in systems)
    progress = progress_bar("[bold]loading[/bold] {task.description}", console, "rows")
    access = TerminologyAccess.for_driver(driver, CLI_PRINCIPAL, database=settings.neo4j.database)
    with progress:
        task = progress.add_task("terminology", total=total)
        report = access.load(
            systems,
            progress=lambda n: progress.advance(task, n),
            suggester=mapping_engine(settings, driver),  # fresh suggestions for flagged ones
        )
    print_report(report, console)
    return report.ok


def print_report(report: TerminologyLoad, console: Console) -> None:
    table = Table(title="terminology load")
    for column in ("system", "version", "concepts", "new", "changed", "IS_A", "retired", "s"):
        table.add_column(column, justify="left" if column in {"system", "version"} else "right")
    for s in report.systems:
        table.add_row(
            s.system,
            s.version,
            str(s.concepts),
            str(s.write.nodes_created["Concept"]),
            str(s.write.nodes_changed["Concept"]),
            str(s.write.rels_written["IS_A"]),
            str(s.retired),
            f"{s.seconds:.1f}",
        )
    console.print(table)
    for s in report.systems:
        if s.concepts == 0:
            console.print(f"[yellow]warning: no concepts from {s.system} {s.version}[/yellow]")
        for what, n in s.notes.items():
            console.print(f"  {s.system}: {what}: {n}")
        for what, n in s.write.dangling.items():
            console.print(
                f"[yellow]  {s.system}: {n} relationships {what} point at nothing[/yellow]"
            )
        for problem in s.problems[:10]:
            console.print(f"[yellow]  {problem}[/yellow]")
        if len(s.problems) > 10:
            console.print(f"[yellow]  … {len(s.problems) - 10} more problems[/yellow]")
    if report.mapped:
        console.print(f"ICD-10 WHO <-> ICD-10-CM identity map: {report.mapped} MAPS_TO")
    if report.flagged:
        console.print(
            f"[yellow]{report.flagged} mappings flagged for re-review: their target codes were "
            "retired or changed (`medshadow mapping list --status flagged`)[/yellow]"
        )
