"""``medshadow drugs …``: load the interaction knowledge, check a list, review a patient,
mine interaction statements from text."""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from app.progress import progress_bar
from app.settings import Settings
from graph.connection import Driver

if TYPE_CHECKING:
    from drugs.service import DrugSafety, Review

drugs_app = typer.Typer(no_args_is_help=True, help="Drug safety: interaction knowledge, reviews")
console = Console(stderr=True)
_STYLE = {"interrupt": "bold red", "review": "yellow", "info": "dim"}


def _service(settings: Settings, driver: Driver) -> DrugSafety:
    from drugs.service import DrugSafety
    from shadow.service import ShadowService

    db = settings.neo4j.database
    return DrugSafety(driver, database=db, shadow=ShadowService(driver, database=db))


def load_knowledge(settings: Settings, driver: Driver) -> None:
    from drugs.ansm import ThesaurusMissingError

    try:
        report = _service(settings, driver).load(lambda msg: console.print(f"[dim]{msg}…[/dim]"))
    except ThesaurusMissingError as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(1) from e
    table = Table(title=f"ANSM interaction thesaurus {report.version}")
    table.add_column("")
    table.add_column("count", justify="right")
    for label, value in (
        ("substances (+ foods and others)", f"{report.substances} (+{report.others})"),
        ("classes", report.classes),
        ("interactions (pairs)", report.interactions),
        ("substances tied to dictionary ingredients", report.mapped_to_ingredients),
        ("nodes created or changed", report.nodes_changed),
        (
            "medication concepts linked to substances",
            f"{report.medication_concepts_linked} of {report.medication_concepts}",
        ),
        ("interactions of older editions removed", report.removed),
    ):
        table.add_row(label, str(value))
    console.print(table)
    if report.unmapped:
        shown = ", ".join(report.unmapped[:12]) + (" …" if len(report.unmapped) > 12 else "")
        console.print(
            f"[yellow]{len(report.unmapped)} substances match no dictionary ingredient[/yellow] "
            f"(checks cannot reach them by name): {shown}"
        )
    for problem in report.problems:
        console.print(f"[yellow]skipped:[/yellow] {problem}")
    console.print(f"in {report.seconds:.1f}s")


def _connected(settings: Settings) -> AbstractContextManager[Driver]:
    from app.cli import connected  # app.cli registers this module's commands: import late

    return connected(settings)


@drugs_app.command("load")
def drugs_load() -> None:
    """Load (or update) the ANSM interaction thesaurus into the graph."""
    settings = Settings()
    with _connected(settings) as driver:
        load_knowledge(settings, driver)


def _print_review(review: Review) -> None:
    for item in review.items:
        sources = ", ".join(f"{s.domain} ({s.status})" for s in item.sources)
        flag = "" if item.resolved else " [yellow](no ingredient matched)[/yellow]"
        console.print(f"  • {item.display}{flag} — {sources}")
        for c in item.conflicts:
            console.print(f"      [magenta]conflict:[/magenta] {c}")
    for f in review.findings:
        console.print(
            f"[{_STYLE[f.priority]}]{f.priority:9}[/{_STYLE[f.priority]}] {f.severity.value:15} "
            f"{f.title}  [dim]{f.evidence}[/dim]"
        )
        for rule in f.rules:
            console.print(f"      [cyan]context:[/cyan] {rule}")
    if review.unresolved:
        console.print(f"[yellow]not recognised:[/yellow] {', '.join(review.unresolved)}")
    console.print(f"[dim]checked in {review.seconds * 1000:.0f} ms ({review.knowledge})[/dim]")


@drugs_app.command("check")
def drugs_check(
    drugs: Annotated[list[str], typer.Argument(help="drug names or rxnorm:<code>")],
) -> None:
    """Check a list of drugs for interactions and duplicate therapy."""
    settings = Settings()
    with _connected(settings) as driver:
        _print_review(_service(settings, driver).check_names(drugs))


@drugs_app.command("review")
def drugs_review(
    person: Annotated[str, typer.Argument(help="person id (person:…)")],
    as_of: Annotated[
        str | None, typer.Option(help="the review's date (ISO, UTC; default: now)")
    ] = None,
    propose: Annotated[
        str | None, typer.Option(help="what-if: a drug to check before prescribing it")
    ] = None,
) -> None:
    """A patient's reconciled medication list, checked with their context."""
    from drugs.service import UnknownPersonError

    when = datetime.fromisoformat(as_of) if as_of else datetime.now(UTC)
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    settings = Settings()
    with _connected(settings) as driver:
        service = _service(settings, driver)
        try:
            if propose:
                review = service.check_prescription(person, propose, int(when.timestamp()))
            else:
                review = service.review(person, int(when.timestamp()))
        except (UnknownPersonError, ValueError) as e:
            console.print(f"[red]error:[/red] {e}")
            raise typer.Exit(1) from e
        _print_review(review)


@drugs_app.command("mine")
def drugs_mine(
    paths: Annotated[list[Path], typer.Argument(help="text files, or DDI-corpus XML files")],
) -> None:
    """Mine interaction statements from text into the graph as literature evidence (never
    mixed with the curated thesaurus). ``.xml`` files are read as DDI-corpus documents."""
    from drugs.literature import statement_row
    from graph.drugs import write_statements
    from nlp.ddi import mine_text, read_ddi_xml

    settings = Settings()
    files = [p for path in paths for p in (sorted(path.rglob("*")) if path.is_dir() else [path])]
    files = [f for f in files if f.is_file()]
    if not files:
        console.print("[red]error:[/red] no files to read")
        raise typer.Exit(2)
    rows: dict[str, dict[str, object]] = {}
    started = time.perf_counter()
    progress = progress_bar("[bold]mining[/bold]", console, "files")
    problems = []
    with progress:
        task = progress.add_task("mine", total=len(files))
        for f in files:
            try:
                if f.suffix.lower() == ".xml":
                    for sentence in read_ddi_xml(f):
                        for s in mine_text(sentence.text, sentence.id):
                            rows.setdefault(
                                statement_row(s, str(f))["uid"], statement_row(s, str(f))
                            )
                else:
                    text = f.read_text(encoding="utf-8")
                    for s in mine_text(text, f.name):
                        row = statement_row(s, str(f))
                        rows.setdefault(str(row["uid"]), row)
            except (OSError, UnicodeDecodeError, ValueError) as e:
                problems.append(f"{f}: {e}")
            progress.advance(task)
    with _connected(settings) as driver:
        stats = write_statements(driver, list(rows.values()), database=settings.neo4j.database)
    by_type: dict[str, int] = {}
    for row in rows.values():
        by_type[str(row["type"])] = by_type.get(str(row["type"]), 0) + 1
    console.print(
        f"{len(rows)} statements from {len(files)} files "
        f"({', '.join(f'{k} {v}' for k, v in sorted(by_type.items()))}); "
        f"{sum(stats.nodes_changed.values())} new or changed in the graph, "
        f"in {time.perf_counter() - started:.1f}s"
    )
    for p in problems:
        console.print(f"[yellow]skipped:[/yellow] {p}")
    if problems:
        raise typer.Exit(3)
