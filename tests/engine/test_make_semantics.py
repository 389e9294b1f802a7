"""Make semantics, proven by counting how often each command really ran."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import counts, has_records, jobspec_do, write

PIPELINE = """
    version: 1
    name: pipe
    tasks:
    - name: fetch
      command: "echo fetch >> count.fetch && echo data > data.txt"
      outputs: [data.txt]
    - name: build
      depends_on: [fetch]
      command: "echo build >> count.build && cat data.txt > built.txt"
      outputs: [built.txt]
    - name: test
      depends_on: [build]
      command: "echo test >> count.test"
    - name: docs
      command: "echo docs >> count.docs"
    """


def test_second_run_executes_nothing(tmp_path: Path) -> None:
    spec = write(tmp_path, PIPELINE)
    first = jobspec_do(spec, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    second = jobspec_do(spec, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert counts(tmp_path) == {"build": 1, "docs": 1, "fetch": 1, "test": 1}
    assert "0 ran, 4 up to date" in second.stderr


def test_edited_task_reruns_with_its_dependents_only(tmp_path: Path) -> None:
    spec = write(tmp_path, PIPELINE)
    assert jobspec_do(spec, cwd=tmp_path).returncode == 0
    spec.write_text(spec.read_text().replace("cat data.txt > built.txt",
                                             "cat data.txt data.txt > built.txt"))
    r = jobspec_do(spec, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert counts(tmp_path) == {"build": 2, "docs": 1, "fetch": 1, "test": 2}


def test_failed_middle_task_stops_dependents_then_resume(tmp_path: Path) -> None:
    spec = write(tmp_path, PIPELINE.replace("cat data.txt > built.txt",
                                            "cat data.txt > built.txt && exit 3"))
    r = jobspec_do(spec, "-k", cwd=tmp_path)
    assert r.returncode == 1
    assert "build" in r.stderr and "exit 3" in r.stderr and "stderr.1" in r.stderr
    assert counts(tmp_path) == {"build": 1, "docs": 1, "fetch": 1}  # test never started
    spec.write_text(spec.read_text().replace(" && exit 3", ""))
    r = jobspec_do(spec, "--resume", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert counts(tmp_path) == {"build": 2, "docs": 1, "fetch": 1, "test": 1}
    status = json.loads(jobspec_do("status", spec, "--json", cwd=tmp_path).stdout)
    build = next(u for u in status["units"] if u["name"] == "build")
    assert (build["state"], build["attempts"]) == ("completed", 2)


def test_without_keep_going_the_run_stops_at_the_failure(tmp_path: Path) -> None:
    spec = write(tmp_path, """
        version: 1
        tasks:
        - {name: bad, command: "exit 5"}
        - {name: after, depends_on: [bad], command: "echo x >> count.after"}
        """)
    r = jobspec_do(spec, "-j", "1", cwd=tmp_path)
    assert r.returncode == 1 and "exit 5" in r.stderr
    assert counts(tmp_path) == {}


def test_changed_input_reruns_and_missing_output_is_noticed(tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("one\n")
    spec = write(tmp_path, """
        version: 1
        tasks:
        - name: copy
          command: "echo x >> count.copy && cp in.txt out.txt"
          inputs: [in.txt]
          outputs: [out.txt]
        """)
    assert jobspec_do(spec, cwd=tmp_path).returncode == 0
    assert jobspec_do(spec, cwd=tmp_path).returncode == 0
    assert counts(tmp_path) == {"copy": 1}
    (tmp_path / "in.txt").write_text("two\n")
    assert jobspec_do(spec, cwd=tmp_path).returncode == 0
    assert counts(tmp_path) == {"copy": 2}
    (tmp_path / "out.txt").unlink()
    assert jobspec_do(spec, cwd=tmp_path).returncode == 0
    assert counts(tmp_path) == {"copy": 3} and (tmp_path / "out.txt").read_text() == "two\n"


def test_success_without_its_outputs_is_a_failure(tmp_path: Path) -> None:
    spec = write(tmp_path, """
        version: 1
        tasks:
        - {name: liar, command: "true", outputs: [promised.txt]}
        """)
    r = jobspec_do(spec, cwd=tmp_path)
    assert r.returncode == 1 and "did not make its outputs" in r.stderr


def test_force_reruns_a_task_and_its_dependents(tmp_path: Path) -> None:
    spec = write(tmp_path, PIPELINE)
    assert jobspec_do(spec, cwd=tmp_path).returncode == 0
    assert jobspec_do(spec, "--force", "build", cwd=tmp_path).returncode == 0
    assert counts(tmp_path) == {"build": 2, "docs": 1, "fetch": 1, "test": 2}


def test_dry_run_says_what_and_why_and_runs_nothing(tmp_path: Path) -> None:
    spec = write(tmp_path, PIPELINE)
    r = jobspec_do(spec, "--dry-run", cwd=tmp_path)
    assert r.returncode == 0 and "4 of 4 would run" in r.stdout and counts(tmp_path) == {}
    assert jobspec_do(spec, cwd=tmp_path).returncode == 0
    spec.write_text(spec.read_text().replace("echo docs >>", "echo DOCS >>"))
    r = jobspec_do(spec, "-n", cwd=tmp_path)
    assert "would run task/docs: its definition changed" in r.stdout
    assert "1 of 4 would run" in r.stdout
    (tmp_path / "data.txt").unlink()  # fetch's output: fetch and all below it must run
    r = jobspec_do(spec, "-n", cwd=tmp_path)
    assert "would run task/fetch: an output or its completion record is missing" in r.stdout
    assert "would run task/build: upstream will run: fetch" in r.stdout
    assert "would run task/test: upstream will run: build" in r.stdout
    assert counts(tmp_path) == {"build": 1, "docs": 1, "fetch": 1, "test": 1}


def test_plan_describes_commands_without_running(tmp_path: Path) -> None:
    spec = write(tmp_path, PIPELINE)
    r = jobspec_do("plan", spec, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "[RUN ] task/build  (after task/fetch)" in r.stdout
    assert "/bin/sh -c 'echo build >> count.build" in r.stdout
    assert counts(tmp_path) == {}


def test_unknown_force_target_is_a_usage_error(tmp_path: Path) -> None:
    r = jobspec_do(write(tmp_path, PIPELINE), "--force", "nope", cwd=tmp_path)
    assert r.returncode == 2 and "no such task" in r.stderr


def test_clean_forgets_everything(tmp_path: Path) -> None:
    spec = write(tmp_path, PIPELINE)
    assert jobspec_do(spec, cwd=tmp_path).returncode == 0
    assert jobspec_do("clean", spec, cwd=tmp_path).returncode == 0
    assert not (tmp_path / ".jobspec-do" / "spec").exists()
    assert jobspec_do(spec, cwd=tmp_path).returncode == 0
    assert counts(tmp_path)["fetch"] == 2


def test_plan_leaves_no_trace(tmp_path: Path) -> None:
    import shutil

    shutil.copy(Path(__file__).resolve().parents[2] / "examples" / "groups.yaml", tmp_path)
    for transformer in ("local", "slurm", "flux"):
        r = jobspec_do("plan", tmp_path / "groups.yaml", "-t", transformer, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["groups.yaml"]


def test_logs_follow_streams_until_the_task_ends(tmp_path: Path) -> None:
    import subprocess
    import sys
    import time

    spec = write(tmp_path, """
        version: 1
        tasks:
        - {name: talk, command: "for i in 1 2 3; do echo line$i; sleep 0.4; done"}
        """)
    run = subprocess.Popen([sys.executable, "-m", "dodo_jobspec.cli", str(spec)], cwd=tmp_path,
                           stderr=subprocess.DEVNULL)
    folder = tmp_path / ".jobspec-do" / "spec" / "tasks" / "talk"
    deadline = time.monotonic() + 20
    while not has_records(folder) and time.monotonic() < deadline:
        time.sleep(0.05)
    r = jobspec_do("logs", spec, "talk", "--follow", cwd=tmp_path, timeout=30)
    run.wait(timeout=30)
    lines = [x for x in r.stdout.splitlines() if not x.startswith("==>")]
    assert r.returncode == 0 and lines == ["line1", "line2", "line3"]


def test_live_display_on_a_terminal() -> None:
    import io

    from dodo_jobspec.engine.console import Console

    out = io.StringIO()
    console = Console(state=None, total=3, stream=out, live=True)  # type: ignore[arg-type]
    console.emit("start", "a")
    console.success("a", 0.5)
    console.uptodate("b")
    console.summary(True)
    text = out.getvalue()
    assert "\r\x1b[K[0/3] done 0  running 1  failed 0  waiting 2" in text
    assert "[2/3] done 1  running 0  failed 0  waiting 1  up-to-date 1" in text
    assert "\r\x1b[Kok: 1 ran, 1 up to date, 0 failed in " in text


def test_quiet_output_is_empty_when_nothing_ran(tmp_path: Path) -> None:
    spec = write(tmp_path, PIPELINE)
    assert jobspec_do(spec, cwd=tmp_path).returncode == 0
    (tmp_path / ".jobspec-do" / "spec" / "noop.manifest").unlink()  # force the full check
    r = jobspec_do(spec, "-q", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout == "" and r.stderr == ""


def test_a_spec_edited_during_a_run_is_not_taken_as_up_to_date(tmp_path: Path) -> None:
    """The no-op manifest is keyed by the spec as it was loaded, not as it is at the end."""
    spec = write(tmp_path, """\
        version: 1
        tasks:
        - name: t
          command: "echo v1 >> count.t && sed -i s/v1/v2/ spec.yaml"
        """)
    assert jobspec_do(spec, cwd=tmp_path).returncode == 0
    assert "echo v2" in spec.read_text()  # edited while it ran
    assert jobspec_do(spec, cwd=tmp_path).returncode == 0
    assert counts(tmp_path) == {"t": 2}


def test_dry_run_with_force_shows_what_force_runs(tmp_path: Path) -> None:
    spec = write(tmp_path, PIPELINE)
    assert jobspec_do(spec, cwd=tmp_path).returncode == 0
    dry = jobspec_do(spec, "--dry-run", "--force", "build", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert "would run task/build: forced (--force)" in dry.stdout
    assert "would run task/test: upstream will run: build" in dry.stdout
    assert "2 of 4 would run" in dry.stdout and counts(tmp_path)["build"] == 1
    assert jobspec_do(spec, "--force", "build", cwd=tmp_path).returncode == 0
    assert counts(tmp_path) == {"build": 2, "docs": 1, "fetch": 1, "test": 2}


GLOB_AND_FOLDER = """
    version: 1
    tasks:
    - name: sum
      command: "echo x >> count.sum && cat data/*.csv > sum.txt"
      inputs: ["data/*.csv"]
      outputs: [sum.txt]
    - name: pack
      command: "echo x >> count.pack && find tree -type f | sort | xargs cat > pack.txt"
      inputs: [tree]
      outputs: [pack.txt]
    - name: deep
      command: "echo x >> count.deep"
      inputs: ["tree/**/*.txt"]
    """


def test_glob_and_folder_inputs_notice_every_kind_of_change(tmp_path: Path) -> None:
    """One more match of a glob, and an edit or a new file anywhere in a folder named as an
    input, re-run the task: through the no-op check and through doit's own."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.csv").write_text("a\n")
    (tmp_path / "tree" / "sub").mkdir(parents=True)
    (tmp_path / "tree" / "sub" / "f.txt").write_text("one\n")
    spec = write(tmp_path, GLOB_AND_FOLDER)

    def run() -> dict[str, int]:
        r = jobspec_do(spec, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert "Traceback" not in r.stderr
        return counts(tmp_path)

    assert run() == {"deep": 1, "pack": 1, "sum": 1}
    assert run() == {"deep": 1, "pack": 1, "sum": 1}  # nothing changed
    (tmp_path / "data" / "b.csv").write_text("b\n")  # one more match
    assert run() == {"deep": 1, "pack": 1, "sum": 2}
    assert (tmp_path / "sum.txt").read_text() == "a\nb\n"
    (tmp_path / "tree" / "sub" / "f.txt").write_text("two\n")  # an edit two levels down
    assert run() == {"deep": 2, "pack": 2, "sum": 2}
    assert (tmp_path / "pack.txt").read_text() == "two\n"
    (tmp_path / "tree" / "sub" / "more").mkdir()
    (tmp_path / "tree" / "sub" / "more" / "g.txt").write_text("three\n")  # a new deep file
    assert run() == {"deep": 3, "pack": 3, "sum": 2}
    assert (tmp_path / "pack.txt").read_text() == "two\nthree\n"
    (tmp_path / "data" / "a.csv").unlink()  # one match fewer
    assert run() == {"deep": 3, "pack": 3, "sum": 3}
    assert run() == {"deep": 3, "pack": 3, "sum": 3}
    spec.touch()  # past the no-op check: doit's own check agrees nothing changed
    assert run() == {"deep": 3, "pack": 3, "sum": 3}


def test_replicas_are_named_by_index_and_counted_as_one_task(tmp_path: Path) -> None:
    spec = write(tmp_path, """
        version: 1
        tasks:
        - name: s
          replicas: 3
          command: 'if [ "$JOBSPEC_REPLICA" = 1 ]; then echo boom >&2; exit 4; fi'
        - {name: other, command: "true"}
        """)
    r = jobspec_do(spec, "-k", cwd=tmp_path)
    assert r.returncode == 1
    lines = r.stderr.splitlines()
    assert {line.split(maxsplit=2)[2].split(":")[0] for line in lines
            if line.split()[1:2] == ["start"]} == {"s[0]", "s[1]", "s[2]", "other"}
    failed = next(i for i, line in enumerate(lines) if " failed    s[1]: exit 4" in line)
    assert lines[failed + 1] == "  | boom"  # the replica's own stderr, from its own log
    assert lines[failed + 2].endswith("/tasks/s/stderr.1.1 (and stdout.1.1)")
    assert "FAILED: 1 ran, 0 up to date, 1 failed" in lines[-1]  # other ran; s[1] failed
    assert lines[-1].endswith("(failed: s[1])")
    spec.write_text(spec.read_text().replace("exit 4", "exit 0"))
    r = jobspec_do(spec, "--resume", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "ok: 1 ran, 1 up to date, 0 failed" in r.stderr  # s, as one task


def test_folder_inputs_follow_links_ignore_hidden_entries_and_broken_links(
        tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "r.txt").write_text("one\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "link").symlink_to(tmp_path / "real")
    (tmp_path / "data" / "broken").symlink_to(tmp_path / "nowhere")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "link").symlink_to(tmp_path / "real")
    (tmp_path / "src" / "loop").symlink_to(tmp_path / "src")  # a cycle: followed once
    spec = write(tmp_path, """
        version: 1
        tasks:
        - {name: pack, command: "echo x >> count.pack", inputs: [data]}
        - {name: deep, command: "echo x >> count.deep", inputs: ["src/**/*.txt"]}
        """)

    def run() -> dict[str, int]:
        r = jobspec_do(spec, cwd=tmp_path)
        assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
        return counts(tmp_path)

    assert run() == {"deep": 1, "pack": 1}
    assert run() == {"deep": 1, "pack": 1}
    (tmp_path / "data" / ".swp").write_text("editor")  # hidden: not an input
    assert run() == {"deep": 1, "pack": 1}
    (tmp_path / "real" / "r.txt").write_text("two\n")  # through both links
    assert run() == {"deep": 2, "pack": 2}
    (tmp_path / "real" / "new.txt").write_text("new\n")  # a new match behind a link
    assert run() == {"deep": 3, "pack": 3}
    assert run() == {"deep": 3, "pack": 3}


BLOCKING = """
    version: 1
    tasks:
    - {name: a, command: "test -e ok"}
    - {name: b, command: "touch b.txt", depends_on: [a], outputs: [b.txt]}
    - {name: c, command: "cat b.txt", inputs: [b.txt]}
    - {name: d, command: "true"}
    """


def test_a_failure_counts_the_tasks_it_blocks_and_status_shows_them_out_of_date(
        tmp_path: Path) -> None:
    """All four completed once; then a fails. b (after a) and c (after b: it reads what b
    makes, an inferred edge) will run again: the summary counts them, and status no longer
    calls them completed."""
    spec = write(tmp_path, BLOCKING)
    (tmp_path / "ok").touch()
    assert jobspec_do(spec, cwd=tmp_path).returncode == 0
    (tmp_path / "ok").unlink()
    spec.write_text(spec.read_text().replace("test -e ok", "test -e ok  # edited"))
    r = jobspec_do(spec, "-k", cwd=tmp_path)
    assert r.returncode == 1
    assert "FAILED: 0 ran, 1 up to date, 1 failed, 2 blocked in " in r.stderr, r.stderr
    r = jobspec_do(spec, cwd=tmp_path)  # without -k the run stops at the failure
    assert ", 1 failed, 2 not run in " in r.stderr or ", 1 failed, 3 not run in " in r.stderr, \
        r.stderr
    r = jobspec_do("status", spec, "--json", cwd=tmp_path)
    assert r.returncode == 1
    status = json.loads(r.stdout)
    states = {u["name"]: (u["state"], u["info"]) for u in status["units"]}
    assert not status["complete"]
    assert states["a"][0] == "failed" and states["d"][0] == "completed"
    assert states["b"] == ("blocked", "out of date: upstream task 'a' is failed; it runs "
                                      "again after that one completes")
    assert states["c"][0] == "blocked" and "upstream task 'b' is blocked" in states["c"][1]
    table = jobspec_do("status", spec, cwd=tmp_path).stdout
    assert "\nb     blocked " in table, table


def test_adding_a_callback_url_reruns_nothing(tmp_path: Path) -> None:
    """attributes.callback is where the run reports, not part of any task's definition."""
    spec = write(tmp_path, PIPELINE)
    assert jobspec_do(spec, cwd=tmp_path).returncode == 0
    text = spec.read_text().replace("name: pipe\n", "name: pipe\nattributes:\n"
                                    "  callback: http://127.0.0.1:9/hook\n")
    spec.write_text(text)
    r = jobspec_do(spec, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert counts(tmp_path) == {"build": 1, "docs": 1, "fetch": 1, "test": 1}, r.stderr


def test_graph_shows_the_edges_plan_infers_from_inputs_and_outputs(tmp_path: Path) -> None:
    """c reads b.txt, which b makes: plan orders c after b; graph left that edge out."""
    spec = write(tmp_path, BLOCKING)
    text = jobspec_do("graph", spec, cwd=tmp_path).stdout
    assert "- task c  <- reads what b makes (inferred)" in text, text
    dot = jobspec_do("graph", spec, "--format", "dot", cwd=tmp_path).stdout
    assert '"task/b" -> "task/c" [style=dashed, label="inferred"];' in dot, dot
    mermaid = jobspec_do("graph", spec, "--format", "mermaid", cwd=tmp_path).stdout
    assert "n1 -.->|inferred| n2" in mermaid, mermaid


def test_a_folder_input_is_compared_by_content_like_a_file(tmp_path: Path) -> None:
    """A `touch` under a folder input re-ran its task, where a file or glob input compares
    content: one rule for all."""
    import os
    import time

    spec = write(tmp_path, """
        version: 1
        tasks:
        - {name: f, command: "echo x >> count.f", inputs: [data]}
        - {name: g, command: "echo x >> count.g", inputs: [data/a.txt]}
        """)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text("one")
    assert jobspec_do(spec, cwd=tmp_path).returncode == 0
    later = time.time() + 5
    os.utime(tmp_path / "data" / "a.txt", (later, later))  # touch: same content
    assert jobspec_do(spec, cwd=tmp_path).returncode == 0
    assert counts(tmp_path) == {"f": 1, "g": 1}
    (tmp_path / "data" / "a.txt").write_text("two")
    assert jobspec_do(spec, cwd=tmp_path).returncode == 0
    assert counts(tmp_path) == {"f": 2, "g": 2}
