"""Helpers of ``medshadow mapping …`` (the commands are in ``app/cli.py``): the operator as a
terminologist, the workbench with the process's engine, suggestions with a progress bar."""

from __future__ import annotations

import getpass

from rich.console import Console

from access.mapping import MappingAccess
from access.policy import Principal, Role
from app.progress import progress_bar
from app.settings import Settings
from graph.connection import Driver

console = Console(stderr=True)


def cli_principal() -> Principal:
    """The operator, as a terminologist; their login name goes into every history entry."""
    return Principal(f"cli:{getpass.getuser()}", Role.TERMINOLOGIST)


def mapping_access(settings: Settings, driver: Driver, *, engine: bool = False) -> MappingAccess:
    suggester = None
    if engine:
        from app.mapping import mapping_engine

        suggester = mapping_engine(settings, driver)
    return MappingAccess(
        driver, cli_principal(), suggester=suggester, database=settings.neo4j.database
    )


def suggest(
    settings: Settings,
    driver: Driver,
    source: str,
    target: str,
    *,
    workspace: str = "main",
    codes: list[str] | None = None,
) -> None:
    """Suggest with a progress bar and a one-line summary (the demo calls this too)."""
    access = mapping_access(settings, driver, engine=True)
    progress = progress_bar("[bold]mapping[/bold] {task.description}", console, "codes")
    with progress:
        task = progress.add_task(f"{source} → {target}", total=None)

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        outcome = access.suggest(source, target, workspace=workspace, codes=codes, progress=advance)
    console.print(
        f"{source} → {target}: {outcome.codes} codes ranked in {outcome.seconds:.1f}s "
        f"({outcome.codes / max(outcome.seconds, 1e-9):.1f}/s), {outcome.changed} mappings "
        f"got new suggestions",
        soft_wrap=True,
    )
    if outcome.without_candidates:
        console.print(
            f"[yellow]no candidates for {len(outcome.without_candidates)} codes: "
            f"{', '.join(outcome.without_candidates[:10])}[/yellow]"
        )
