"""What the management commands that run a long job share: run it here, in
the foreground, with a progress bar; Ctrl-C cancels it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TextIO, TypeVar

from tqdm import tqdm

from imagineer_project.runs import BaseRun, RunCancelled, run_execute, run_progress

R = TypeVar("R", bound=BaseRun)


def run_in_foreground(
    run: R,
    body: Callable[[R], str],
    *,
    stream: TextIO,
    unit: str = "item",
    postfix: Callable[[R], str] | None = None,
    quiet: bool = False,
) -> R:
    """Execute `run` with `body` in this process (the run machine claims and
    ends it as a worker would) and draw its checkpoints as a progress bar on
    `stream`. Ctrl-C ends the run as cancelled. Returns the run as it ended."""
    with tqdm(total=0, unit=unit, file=stream, disable=quiet) as bar:

        def draw(current: Any) -> None:
            bar.total = current.progress_total
            bar.n = current.progress_done
            if postfix is not None:
                bar.set_postfix_str(postfix(current), refresh=False)
            bar.refresh()

        def interruptible(current: R) -> str:
            try:
                return body(current)
            except KeyboardInterrupt as exc:  # Ctrl-C: end as cancelled
                raise RunCancelled from exc

        with run_progress(draw):
            run_execute(type(run), run.pk, interruptible)
    run.refresh_from_db()
    return run
