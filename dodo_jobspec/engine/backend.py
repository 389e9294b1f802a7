"""doit's sqlite3 backend, committed after every task so a kill -9 loses nothing.

doit keeps its whole database in memory and writes it once, when the run ends: a SIGKILL
loses every success of the run (doit issue #463). doit's ``save_success`` writes a task's
``deps:`` key last, so committing that task's row right then makes each success durable the
moment doit records it. A test pins the write order (doit is pinned to <0.39 for it).
"""

from __future__ import annotations

import sqlite3
from typing import Any

from doit.dependency import SqliteDB


class IncrementalSqliteDB(SqliteDB):  # type: ignore[misc]
    """SqliteDB with WAL and a commit per finished task."""

    def _sqlite3(self, name: str) -> sqlite3.Connection:
        conn = super()._sqlite3(name)
        # WAL + NORMAL: a commit is durable against a process kill (not a power cut) and cheap.
        conn.execute("pragma journal_mode=WAL")
        conn.execute("pragma synchronous=NORMAL")
        return conn

    def set(self, task_id: str, dependency: str, value: Any) -> None:
        super().set(task_id, dependency, value)
        if dependency == "deps:":
            self._conn.execute("insert or replace into doit values (?,?)",
                               (task_id, self.codec.encode(self._cache[task_id])))
            self._conn.commit()
            self._dirty.discard(task_id)

    def remove(self, task_id: str) -> None:
        super().remove(task_id)
        self._conn.commit()
