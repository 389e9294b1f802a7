"""`jobspec-do cancel`: stop every queued or running job recorded for a spec.

On a scheduler that is the scheduler's cancel for each recorded job; on a transformer without
a queue (local) the jobs are processes of the run itself, so the run is stopped as Ctrl-C
would stop it.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from ..bursters.move import BurstDriver, on_target
from ..bursters.policy import BurstPolicy
from ..errors import EXIT_FAILED, EXIT_OK, JobspecError
from ..records.state import lock_holder
from ..records.status import open_state


def cancel_all(req: Any) -> int:
    """`jobspec-do cancel`: cancel every queued or running job recorded for the spec."""
    from .. import plugins
    from ..transformers.base import TransformerOptions

    state = open_state(req.spec, req.state_dir)
    cls = plugins.load(plugins.TRANSFORMERS, req.transformer)
    transformer = cls(TransformerOptions(state_dir=state.root))
    if not transformer.polled:
        return _stop_run(state.root)
    driver = BurstDriver(BurstPolicy([]), transformer, lambda *a: None, state.root)
    live = []
    for node in state.spec.nodes.values():
        st = state.unit(node)
        log = state.journal.unit(st.key)
        for replica in log.records if log is not None else ():
            job = st.read_job(replica)
            if job.job_id and job.state in ("queued", "running", "submitting") \
                    and (job.transformer == transformer.name or on_target(job)):
                live.append((st, job, replica))
    if not live:
        print("nothing queued or running")
        return EXIT_OK
    # A job a burst moved is cancelled where it went (bursters/move.py keeps where).
    by_place: dict[str, list[str]] = {}
    for _, job, _ in live:
        by_place.setdefault(job.transformer, []).append(job.job_id or "")
    for _, job, _ in live:
        ids = by_place.pop(job.transformer, None)
        if ids:
            driver.transformer_for(job).cancel(ids)
    for st, job, replica in live:
        job.state = "canceled"
        st.append_status(job.attempt, "canceled", f"job {job.job_id}: jobspec-do cancel",
                         record=job if job.attempt else None, replica=replica)
        where = f" on {job.transformer.removeprefix('burst:')}" if on_target(job) else ""
        print(f"canceled {st.unit.name}: job {job.job_id}{where}")
    return EXIT_OK


STOP_WAIT = 30.0  # seconds: the run stops each task (SIGTERM, then SIGKILL 5 s later), records


def _stop_run(root: Path) -> int:
    """Cancel for a transformer without a queue: its jobs are processes of the run itself, so
    stop that run as Ctrl-C would (it stops its tasks and records them as interrupted), and
    wait for it to let go of the state directory."""
    try:
        pid = lock_holder(root)
    except OSError as exc:
        raise JobspecError(f"cannot tell which run holds {root} ({exc}); stop it with Ctrl-C "
                           "or kill -TERM <pid in its lock file>") from exc
    if pid is None:
        print("nothing queued or running")
        return EXIT_OK
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:  # it ended in between
        print("nothing queued or running")
        return EXIT_OK
    deadline = time.monotonic() + STOP_WAIT
    while lock_holder(root) == pid:
        if time.monotonic() > deadline:
            print(f"asked the run (pid {pid}) to stop; it still holds {root} after "
                  f"{STOP_WAIT:g}s", file=sys.stderr)
            return EXIT_FAILED
        time.sleep(0.05)
    print(f"stopped the run (pid {pid}): its running tasks are recorded as interrupted")
    return EXIT_OK
