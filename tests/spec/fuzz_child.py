"""The fuzz test's child: validate and plan every spec named on stdin, in this process, under
a memory limit and a per-case alarm; print one JSON line per case. (A separate process: the
limit and a crash must not touch the test runner.)"""

from __future__ import annotations

import contextlib
import io
import json
import resource
import signal
import sys
import traceback

from dodo_jobspec.cli.app import main

LIMIT = 1536 << 20  # bytes of address space: far above any sane spec, far below the machine
SECONDS = 10  # per case


class Timeout(Exception):
    pass


def _alarm(signum: int, frame: object) -> None:
    raise Timeout


def run(path: str) -> dict[str, object]:
    out: dict[str, object] = {"path": path, "codes": []}
    for args in (["validate", path], ["plan", path]):
        err = io.StringIO()
        signal.alarm(SECONDS)
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                code = main(args)
        except Timeout:
            code, out["error"] = "timeout", f"{args[0]} took more than {SECONDS} s"
        except MemoryError:
            code, out["error"] = "memory", f"{args[0]} exceeded {LIMIT >> 20} MiB"
        except BaseException:
            code, out["error"] = "traceback", traceback.format_exc()
        finally:
            signal.alarm(0)
        if "Traceback" in err.getvalue():
            code, out["error"] = "traceback", err.getvalue()
        out["codes"].append(code)  # type: ignore[attr-defined]
        if code not in (0, 2):
            break
    return out


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT, LIMIT))
    signal.signal(signal.SIGALRM, _alarm)
    for line in sys.stdin:
        print(json.dumps(run(line.strip())), flush=True)
