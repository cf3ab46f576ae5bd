"""Progress for long runs: a rich bar on a terminal, plain timestamped lines otherwise.

With output redirected (CI logs, pipes) a bar draws nothing useful, so :func:`progress_bar`
prints one line per stage and then one every ``every_s`` seconds (``done/total``, elapsed).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console

__all__ = ["progress_bar", "table_console", "Stage", "heartbeat"]

# stage(description, total) -> tick(); call tick() once per unit of work.
Stage = Callable[[str, int], Callable[[], None]]


@contextmanager
def progress_bar(console: Console | None = None, every_s: float = 10.0) -> Iterator[Stage]:
    """Yield a ``stage(description, total)`` function for :data:`Stage`-style progress."""
    console = console or Console(stderr=True)
    if console.is_terminal:
        from rich.progress import (  # only drawn on a terminal: imported when used
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        columns = (TextColumn("[progress.description]{task.description}"), BarColumn(),
                   MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
        with Progress(*columns, console=console, transient=False) as bar:
            def stage(description: str, total: int) -> Callable[[], None]:
                task = bar.add_task(description, total=total)
                return lambda: bar.advance(task)

            yield stage
        return

    t0 = time.monotonic()

    def stage(description: str, total: int) -> Callable[[], None]:
        state = {"done": 0, "last": time.monotonic()}
        console.print(f"[{time.monotonic() - t0:6.0f} s] {description}: 0/{total}",
                      highlight=False)

        def tick() -> None:
            state["done"] += 1
            now = time.monotonic()
            if now - state["last"] >= every_s or state["done"] == total:
                state["last"] = now
                console.print(f"[{now - t0:6.0f} s] {description}: {state['done']}/{total}",
                              highlight=False)

        return tick

    yield stage


@contextmanager
def heartbeat(console: Console, name: str,
              every_s: float = 30.0) -> Iterator[Callable[[str], None]]:
    """Plain progress of one long step, for output that is not a terminal.

    Prints ``[   0 s] NAME: started``, then one line per stage passed to the yielded
    ``stage(description)`` function, and ``NAME: still running (STAGE), N s`` every ``every_s``
    seconds in between; ``NAME: done, N s`` at the end (``failed`` on an exception).
    """
    t0 = time.monotonic()
    state = {"stage": "starting"}
    lock = threading.Lock()
    stop = threading.Event()

    def say(text: str) -> None:
        with lock:
            console.print(f"[{time.monotonic() - t0:6.0f} s] {name}: {text}", highlight=False)

    def stage(description: str) -> None:
        state["stage"] = description
        say(description)

    def beat() -> None:
        while not stop.wait(every_s):
            say(f"still running ({state['stage']}), {time.monotonic() - t0:.0f} s")

    say("started")
    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    ok = False
    try:
        yield stage
        ok = True
    finally:
        stop.set()
        thread.join()
        say(f"{'done' if ok else 'failed'}, {time.monotonic() - t0:.0f} s")


def table_console(width: int = 160) -> Console:
    """Standard output for tables: the terminal's width on a terminal or when ``COLUMNS`` is
    set; otherwise (pipes, CI logs, where rich would assume 80 columns and wrap figures
    mid-number) ``width`` columns."""
    console = Console()
    if console.is_terminal or os.environ.get("COLUMNS"):
        return console
    return Console(width=width)
