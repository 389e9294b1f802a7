"""Start a process with glibc's posix_spawn while the GIL is released.

``os.posix_spawn`` holds the GIL until the child has exec'd (glibc spawns with vfork
semantics: the calling thread waits for the exec). For a trivial shell task that is ~0.25 ms in
which no other thread of jobspec-do runs: a third of the run's whole Python time, measured
with ``py-spy --gil`` on 5,000 local tasks. A ctypes call releases the GIL around the foreign
function, so the same glibc function called through ctypes lets doit's threads go on while the
child starts. The child is created exactly as ``os.posix_spawn(..., setsid=True,
setsigdef=...)`` creates it: same function, same flags.

Linux with glibc only (``POSIX_SPAWN_SETSID`` is a GNU extension, glibc >= 2.26); elsewhere
``available()`` is False and the local transformer uses ``os.posix_spawn``.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading

_SETSIGDEF = 0x04  # glibc's <spawn.h>
_SETSID = 0x80
# The opaque glibc types are 336 (attr) and 80 (file actions) bytes on x86-64; these
# buffers are generous for every architecture glibc supports.
_ATTR_SIZE = 1024
_ACTIONS_SIZE = 512
_SIGSET_SIZE = 256
CREATE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW  # no planted link followed


class _Libc:
    """The glibc functions and the spawn attributes every task shares (read-only once made)."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self.spawn = libc.posix_spawn
        self.spawn.argtypes = [ctypes.POINTER(ctypes.c_int), ctypes.c_char_p, ctypes.c_void_p,
                               ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        self.actions_init = libc.posix_spawn_file_actions_init
        self.actions_dup2 = libc.posix_spawn_file_actions_adddup2
        self.actions_open = libc.posix_spawn_file_actions_addopen
        self.actions_open.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p,
                                      ctypes.c_int, ctypes.c_uint]
        # glibc >= 2.29; without it a task with its own cwd goes through Popen.
        self.actions_chdir = getattr(libc, "posix_spawn_file_actions_addchdir_np", None)
        if self.actions_chdir is not None:
            self.actions_chdir.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        self.actions_destroy = libc.posix_spawn_file_actions_destroy
        self.attr = ctypes.create_string_buffer(_ATTR_SIZE)
        sigset = ctypes.create_string_buffer(_SIGSET_SIZE)
        if libc.posix_spawnattr_init(self.attr) or libc.sigemptyset(sigset):
            raise OSError("posix_spawnattr_init failed")
        # Python ignores SIGPIPE and SIGXFSZ, and an ignored signal stays ignored across
        # exec: Popen resets them (restore_signals), and so must we.
        for name in ("SIGPIPE", "SIGXFSZ"):
            if hasattr(signal, name):
                libc.sigaddset(sigset, int(getattr(signal, name)))
        if libc.posix_spawnattr_setsigdefault(self.attr, sigset):
            raise OSError("posix_spawnattr_setsigdefault failed")
        # EINVAL here means a libc without POSIX_SPAWN_SETSID: not available.
        if libc.posix_spawnattr_setflags(self.attr, ctypes.c_short(_SETSID | _SETSIGDEF)):
            raise OSError("posix_spawnattr_setflags(POSIX_SPAWN_SETSID) is not supported")


_LIBC: list[_Libc | None] = []
_LOCK = threading.Lock()


def _libc() -> _Libc | None:
    with _LOCK:
        if not _LIBC:
            try:
                ok = sys.platform.startswith("linux") and os.confstr(
                    "CS_GNU_LIBC_VERSION") is not None
                _LIBC.append(_Libc() if ok else None)
            except (OSError, AttributeError, ValueError):
                _LIBC.append(None)
        return _LIBC[0]


def available() -> bool:
    """True where ``spawn`` works (Linux with glibc >= 2.26)."""
    return _libc() is not None


def can_chdir() -> bool:
    """True where ``spawn`` can start a process in another directory (glibc >= 2.29)."""
    libc = _libc()
    return libc is not None and libc.actions_chdir is not None


def spawn(path: str, argv: list[str], env: dict[bytes, bytes], stdin: int, stdout: str,
          stderr: str, cwd: str | None = None) -> int:
    """Start ``path`` with ``argv`` and ``env`` in a new session (in ``cwd`` if given, see
    ``can_chdir``) and return its pid.

    Its stdin is the descriptor ``stdin``; its stdout and stderr are the files ``stdout`` and
    ``stderr``, created or truncated by the child (so the parent makes no system call for them).
    Raises OSError as ``os.posix_spawn`` does (ENOENT for a missing program); the filename
    names a log file that could not be opened.
    """
    libc = _libc()
    if libc is None:
        raise OSError("posix_spawn through ctypes is not available here")
    args = [os.fsencode(a) for a in argv]
    argv_c = (ctypes.c_char_p * (len(args) + 1))(*args, None)
    pairs = [k + b"=" + v for k, v in env.items()]
    env_c = (ctypes.c_char_p * (len(pairs) + 1))(*pairs, None)
    actions = ctypes.create_string_buffer(_ACTIONS_SIZE)
    if libc.actions_init(actions):
        raise OSError("posix_spawn_file_actions_init failed")
    try:
        if (libc.actions_dup2(actions, stdin, 0)
                or libc.actions_open(actions, 1, os.fsencode(stdout), CREATE, 0o644)
                or libc.actions_open(actions, 2, os.fsencode(stderr), CREATE, 0o644)):
            raise OSError("posix_spawn_file_actions_add* failed")
        # After the opens: relative log paths are relative to our directory, as with Popen.
        if cwd is not None and (libc.actions_chdir is None
                                or libc.actions_chdir(actions, os.fsencode(cwd))):
            raise OSError("posix_spawn_file_actions_addchdir_np failed")
        pid = ctypes.c_int()
        err = libc.spawn(ctypes.byref(pid), os.fsencode(path), actions, libc.attr, argv_c,
                         env_c)
    finally:
        libc.actions_destroy(actions)
    if err:
        # The child's failure is one errno for the program and the logs alike: tell them apart.
        if os.access(path, os.X_OK) and (cwd is None or os.path.isdir(cwd)):
            for log in (stdout, stderr):
                try:
                    os.close(os.open(log, CREATE, 0o644))
                except OSError as exc:
                    raise OSError(exc.errno, exc.strerror, log) from None
        raise OSError(err, os.strerror(err), path)
    return pid.value
