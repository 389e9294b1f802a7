"""doit's sqlite3 backend, committed as the run goes so a kill -9 loses (almost) nothing.

doit keeps its whole database in memory and writes it once, when the run ends: a SIGKILL
loses every success of the run (doit issue #463). doit's ``save_success`` writes a task's
``deps:`` key last, so writing that task's row right then makes each success durable. A test
pins the write order (doit is pinned to <0.39 for it).

Rows are written and committed at most every COMMIT_INTERVAL seconds, not once per task: a
commit cost a tenth of a trivial task's whole overhead, and each statement hands the GIL
away. A kill can lose the last interval's rows; those
tasks then look undone to doit, and the unit runner adopts them from their job records
(completed, same signature, outputs present) without running anything again.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from doit.dependency import SqliteDB

COMMIT_INTERVAL = 0.25  # seconds


def _full(exc: Exception) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and "full" in str(exc)


class IncrementalSqliteDB(SqliteDB):  # type: ignore[misc]
    """SqliteDB with WAL, writing finished tasks' rows in batches as doit records them.

    A full disk is not an error here: ``on_full`` (set by the run) frees the space the run
    kept in reserve and stops it, the write is tried again, and if it still fails the rows
    stay in memory. Lost rows cost nothing: the unit runner adopts those tasks from their
    job records."""

    _last_commit = 0.0
    _pending: dict[str, str] | None = None
    on_full: Callable[[], None] | None = None

    def _sqlite3(self, name: str) -> sqlite3.Connection:
        conn = super()._sqlite3(name)
        # WAL + NORMAL: a commit is durable against a process kill (not a power cut) and cheap.
        conn.execute("pragma journal_mode=WAL")
        conn.execute("pragma synchronous=NORMAL")
        # A first run's table is empty: doit's query for each task's row (and the GIL handed
        # away for it, in doit's dispatching thread) can only find what this run wrote.
        self._empty = conn.execute("select 1 from doit limit 1").fetchone() is None
        self._written: set[str] = set()
        return conn

    def forget(self, task_id: str) -> None:
        """Drop the cached row of ``task_id`` (read, never written here): a check of every
        task that reads each row once (`plan`) keeps none of them."""
        if task_id not in self._dirty:
            self._cache.pop(task_id, None)

    def _get_task_data(self, task_id: str) -> dict[str, Any]:
        if self._empty and task_id not in self._written:
            return {}
        return super()._get_task_data(task_id)  # type: ignore[no-any-return]

    def in_(self, task_id: str) -> bool:
        if self._empty and task_id not in self._written and task_id not in self._cache:
            return False
        return super().in_(task_id)  # type: ignore[no-any-return]

    def set(self, task_id: str, dependency: str, value: Any) -> None:
        super().set(task_id, dependency, value)
        if dependency == "deps:":
            # Kept here until the batch is written: each statement releases the GIL, and
            # doit's dispatching thread then waited ~50 us to get it back, once per task.
            if self._pending is None:
                self._pending = {}
            self._pending[task_id] = self.codec.encode(self._cache[task_id])
            self._dirty.discard(task_id)
            now = time.monotonic()
            if now - self._last_commit >= COMMIT_INTERVAL:
                self._flush()
                self._last_commit = now

    def _flush(self) -> None:
        for last in (False, True):
            try:
                self._write_pending()
                return
            except sqlite3.Error as exc:
                if not _full(exc) or type(self).on_full is None:
                    raise
                self._conn.rollback()
                type(self).on_full()  # type: ignore[misc]
                if last:
                    return  # kept in _pending: the next flush tries again

    def _write_pending(self) -> None:
        if self._pending:
            self._conn.executemany("insert or replace into doit values (?,?)",
                                   list(self._pending.items()))
            # doit keeps every task's data in memory for the whole run, and reads a task's
            # own data again only to check it before it runs; written, it can be read back
            # from the table if ever needed (40-60 MB at 100,000 tasks).
            for task_id in self._pending:
                self._cache.pop(task_id, None)
                if self._empty:
                    self._written.add(task_id)
            self._pending.clear()
        self._conn.commit()

    def remove(self, task_id: str) -> None:
        if self._pending:
            self._pending.pop(task_id, None)  # else the next batch would bring it back
        super().remove(task_id)
        self._conn.commit()

    def dump(self) -> None:
        self._flush()
        try:
            super().dump()
        except sqlite3.Error as exc:
            if not _full(exc) or type(self).on_full is None:
                raise
            type(self).on_full()  # type: ignore[misc]
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
