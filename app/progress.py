"""The one progress bar every long CLI job shows: what it does, done/total, elapsed time."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


def progress_bar(title: str, console: Console, unit: str | None = None) -> Progress:
    """``title`` is rich markup and may use ``{task.description}``; ``unit`` follows the count."""
    columns = [TextColumn(title), BarColumn(), MofNCompleteColumn()]
    if unit:
        columns.append(TextColumn(unit))
    return Progress(*columns, TimeElapsedColumn(), console=console)
