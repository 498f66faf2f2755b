"""The timer scheduler entry point: APScheduler calling the sweep every few seconds."""

from __future__ import annotations

import logging
import threading
from datetime import datetime

from apscheduler.schedulers.blocking import BlockingScheduler

from engine import clock, timers
from engine.context import Context

log = logging.getLogger(__name__)


def run_scheduler(ctx: Context, *, interval: float, runs: int | None = None) -> None:
    """Sweep every ``interval`` seconds until stopped (or after ``runs`` sweeps)."""
    scheduler = BlockingScheduler(timezone=clock.SHANGHAI)
    done = threading.Event()
    count = {"runs": 0}

    def job() -> None:
        result = timers.sweep(ctx.sessions, clock.now())
        if result.fired or result.errors:
            log.info("sweep fired %s timer(s), %s error(s)", result.fired, len(result.errors))
        count["runs"] += 1
        if runs is not None and count["runs"] >= runs and not done.is_set():
            done.set()
            scheduler.shutdown(wait=False)

    scheduler.add_job(job, "interval", seconds=interval, max_instances=1, coalesce=True,
                      next_run_time=datetime.now(clock.SHANGHAI))
    scheduler.start()
