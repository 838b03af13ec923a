"""Stop signals of the one-shot commands (``sync``, ``import-image``, ``prune``).

SIGTERM (what ``systemctl stop``, ``TimeoutStartSec=`` and ``podman stop`` send) and
SIGINT are handled as the daemon handles its stop: no new copy starts, the copies in
flight get ``--stop-timeout`` seconds (``MIRRORD_STOP_TIMEOUT``, 30 by default) to
finish, then they are cancelled, which the run records (its job Failed,
"interrupted"). A second signal cancels at once. The command still prints its
summary (and ``-o json`` document) and exits ``128 + signal``: 143 for SIGTERM, 130
for SIGINT.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import anyio
import click
from anyio.abc import TaskStatus

T = TypeVar("T")
log = logging.getLogger("mirrord")

DEFAULT_STOP_TIMEOUT = 30.0
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

stop_timeout_option = click.option(
    "--stop-timeout",
    type=click.FloatRange(min=0),
    default=DEFAULT_STOP_TIMEOUT,
    show_default=True,
    envvar="MIRRORD_STOP_TIMEOUT",
    metavar="SECONDS",
    help="On SIGTERM or SIGINT, how long copies in flight may take to finish before they "
    "are cut (a second signal cuts them at once).",
)


@dataclass
class Interruption:
    """The stop signal a command received (None: none) and whether work was cut."""

    signal: signal.Signals | None = None
    cut: bool = False

    @property
    def requested(self) -> bool:
        return self.signal is not None

    @property
    def name(self) -> str:
        return self.signal.name if self.signal is not None else ""

    @property
    def exit_code(self) -> int:
        assert self.signal is not None
        return 128 + int(self.signal)

    def describe(self) -> str:
        if self.signal is None:
            return ""
        how = "copies in flight were cut" if self.cut else "copies in flight finished"
        return (
            f"interrupted by {self.name} ({how}); the mirror and state are consistent, "
            "re-run to continue"
        )


async def run_stoppable(
    body: Callable[[Callable[[], bool]], Awaitable[T]], grace: float
) -> tuple[T | None, Interruption]:
    """Run ``body(should_stop)`` with SIGTERM and SIGINT caught (module docstring).

    ``should_stop()`` turns True at the first signal. The body's result, or None when
    it was cut (cancelled), and what happened. Errors of the body propagate.
    """
    interruption = Interruption()
    work = anyio.CancelScope()
    outcome: T | None = None

    def cut(why: str) -> None:
        if not work.cancel_called:
            log.warning("%s: cancelling the copies still in flight", why)
            interruption.cut = True
            work.cancel()

    async def cut_after_grace() -> None:
        await anyio.sleep(grace)
        cut(f"{interruption.name}: the {grace:g}s stop timeout ran out")

    async def watch(*, task_status: TaskStatus[None]) -> None:
        with anyio.open_signal_receiver(*STOP_SIGNALS) as signals:
            task_status.started()
            async for signum in signals:
                if interruption.signal is None:
                    interruption.signal = signal.Signals(signum)
                    log.warning(
                        "%s received: no new copy starts; copies in flight have %gs to "
                        "finish (a second signal stops them now)",
                        interruption.name,
                        grace,
                    )
                    tg.start_soon(cut_after_grace)
                else:
                    cut(f"{signal.Signals(signum).name} again")

    async with anyio.create_task_group() as tg:
        await tg.start(watch)
        with work:
            outcome = await body(lambda: interruption.signal is not None)
        tg.cancel_scope.cancel()
    return outcome, interruption
