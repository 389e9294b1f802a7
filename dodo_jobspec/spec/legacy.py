"""Read the older jobspec 0.0.x format by translating it into a version-1 (NG) document.

A 0.0.x file has one top-level ``task`` with ``scripts`` (name + content) and ordered
``transform`` steps, and Flux-V1-style ``resources`` (a list, with a labelled ``slot``):

* ``write`` becomes a ``write`` step (the script is written into the staging directory, which is
  the task's working directory), ``stage`` a ``stage`` step. Both are attached to the next
  ``submit``/``batch`` task; a task also carries the write/stage steps of the file it runs.
* ``submit`` and ``batch`` each become a task that runs the written script (or the task's
  ``command``, see :func:`_command`). ``wait: true`` makes every later submit/batch depend on
  that task; ``watch: true`` becomes ``attributes.watch``.
* ``resources`` becomes one named resource (named after the slot label), ``task.resources``
  (a requires-like mapping in these files) the task's ``requires`` mapping.

Everything that cannot be carried over faithfully is a Problem at the legacy file's own spec
path (``task.transform[2]``), never silently dropped -- except ``count.per_slot``, see below.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from pathlib import Path
from typing import Any

from ..errors import PathPart, Problem, SpecError, format_path, suggest
from ..paths import OutsideError, check_inside
from .source import Document

SUPPORTED_STEPS = ("write", "stage", "submit", "batch")
_TOP_KEYS = ("version", "name", "resources", "task", "attributes", "requires")
_TASK_KEYS = ("transform", "scripts", "command", "count", "resources", "slot", "attributes")
_STEP_KEYS = {"write": ("step", "filename", "executable"), "stage": ("step", "filename"),
              "submit": ("step", "filename", "wait", "watch"),
              "batch": ("step", "filename", "wait", "watch")}
_RESOURCE_KEYS = ("type", "count", "with", "label", "exclusive", "unit", "requires",
                  "attributes")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SUPPORTED_TEXT = ", ".join(SUPPORTED_STEPS)


def is_legacy(data: Any) -> bool:
    """Whether ``data`` is a 0.0.x document: one ``task`` (not ``tasks``) with transform steps
    or scripts, or Flux-V1-style list ``resources``."""
    if not isinstance(data, dict) or "task" not in data or "tasks" in data:
        return False
    task = data["task"]
    return isinstance(data.get("resources"), list) or (
        isinstance(task, dict) and ("transform" in task or "scripts" in task))


def translate(doc: Document) -> Document:
    """Return an equivalent version-1 document (same path and text, new data).

    Raises SpecError listing every problem found, located in the legacy file.
    """
    tr = _Translator(doc)
    data = tr.run()
    if tr.problems:
        tr.problems.sort(key=lambda p: (p.line or 0, p.column or 0))
        raise SpecError(tr.problems)
    return Document(doc.path, doc.text, data, origins=tr.origins)


class _Translator:
    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.data: dict[str, Any] = doc.data
        self.problems: list[Problem] = []
        self.root = doc.path.parent  # where written and staged files live, relative paths
        self.origins: dict[str, str] = {}  # see Document.origins
        self._origin: dict[int, str] = {}  # id of a step's dict -> its path in the file

    def err(self, message: str, path: tuple[PathPart, ...], hint: str | None = None,
            *, at_key: bool = False) -> None:
        self.problems.append(self.doc.problem(message, list(path), hint, at_key=at_key))

    def unknown_keys(self, mapping: dict[str, Any], known: tuple[str, ...],
                     path: tuple[PathPart, ...], what: str) -> None:
        for key in mapping:
            if key not in known:
                near = suggest(str(key), known)
                self.err(f"unknown key '{key}' in a 0.0.x {what}", (*path, key),
                         f"did you mean '{near}'?" if near else f"known: {', '.join(known)}",
                         at_key=True)

    # -- the document ---------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        d = self.data
        self.unknown_keys(d, _TOP_KEYS, (), "file")
        out: dict[str, Any] = {"version": 1}
        for key in ("name", "attributes", "requires"):
            if key in d:
                out[key] = d[key]
        task = d.get("task")
        if not isinstance(task, dict):
            self.err("`task` must be a mapping with `transform` steps and `scripts`", ("task",))
            return out
        self.unknown_keys(task, _TASK_KEYS, ("task",), "task")
        res_name = self.resources(d.get("resources"), task.get("slot"), out)
        self.count(task.get("count"))
        requires = self.requires(task.get("resources"))
        attributes = task.get("attributes") or {}
        if not isinstance(attributes, dict):
            self.err("`attributes` must be a mapping", ("task", "attributes"))
            attributes = {}
        common: dict[str, Any] = {}
        if res_name:
            common["resources"] = res_name
        if requires:
            common["requires"] = requires
        out["tasks"] = self.tasks(task, common, attributes)
        return out

    def resources(self, value: Any, slot: Any, out: dict[str, Any]) -> str | None:
        if value is None or value == []:
            return None  # no resources: the transformer's default applies
        if not isinstance(value, list):
            self.err("0.0.x `resources` must be a list (Flux V1 style)", ("resources",))
            return None
        if len(value) != 1:
            self.err(f"a 0.0.x file has one top-level resource (here {len(value)})",
                     ("resources",), "nest the others under one vertex with `with:`")
            return None
        tree = self.resource(value[0], ("resources", 0))
        if tree is None:
            return None
        labels = _slot_labels(tree)
        if slot is not None:
            if slot not in labels:
                self.err(f"no slot labelled '{slot}' in resources", ("task", "slot"),
                         f"labels: {', '.join(labels)}" if labels else
                         "give a `type: slot` vertex `label: " + str(slot) + "`")
                return None
            name = str(slot)
        else:
            name = labels[0] if labels else "legacy"
        if not _NAME.match(name):
            name = "legacy"  # a label that is no valid resource name still names the slot
        out["resources"] = {name: tree}
        return name

    def resource(self, value: Any, path: tuple[PathPart, ...]) -> dict[str, Any] | None:
        if not isinstance(value, dict) or not isinstance(value.get("type"), str):
            self.err("a resource must be a mapping with a `type`", path)
            return None
        self.unknown_keys(value, _RESOURCE_KEYS, path, "resource")
        count = value.get("count", 1)
        if isinstance(count, dict):
            # Flux V1 count ranges {min, max, operator, operand}: nothing here can ask a
            # scheduler for a range, so take no guess at which end was meant.
            self.err("count ranges are not supported", (*path, "count"),
                     "give a fixed number, e.g. `count: 4`")
            return None
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            self.err("`count` must be a whole number of at least 1", (*path, "count"))
            return None
        tree = {k: v for k, v in value.items() if k in _RESOURCE_KEYS and k != "with"}
        children = value.get("with")
        if children is not None:
            if not isinstance(children, list) or not children:
                self.err("`with` must be a non-empty list of resources", (*path, "with"))
                return None
            subs = [self.resource(c, (*path, "with", i)) for i, c in enumerate(children)]
            if any(s is None for s in subs):
                return None
            tree["with"] = subs
        return tree

    def count(self, value: Any) -> None:
        if value is None:
            return
        if not isinstance(value, dict):
            self.err("`count` must be a mapping like `per_slot: 1`", ("task", "count"))
            return
        # count.per_slot is how many copies of the command Flux V1 starts in each slot. The
        # 0.0.x transformers never passed it on (they submitted the script once with -N/-n
        # from the slot), so ignoring it runs these files exactly as they ran before.
        for key in value:
            if key != "per_slot":
                self.err(f"`count.{key}` is not supported", ("task", "count", key),
                         "only `count.per_slot` is accepted (and ignored)", at_key=True)

    def requires(self, value: Any) -> dict[str, Any] | None:
        if value is None:
            return None
        path: tuple[PathPart, ...] = ("task", "resources")
        if not isinstance(value, dict):
            self.err("task `resources` must be a mapping of requirements "
                     "(e.g. `hardware: {hardware.gpu.available: 'no'}`)", path)
            return None
        for ns, kv in value.items():
            if isinstance(kv, dict):
                for k, v in kv.items():
                    if not _scalar(v):
                        self.err("a requirement must be a string, number or boolean",
                                 (*path, ns, k))
            elif not _scalar(kv):
                self.err("a requirement must be a value or a mapping of values", (*path, ns))
        return dict(value)

    # -- scripts and transform steps -----------------------------------------------------------
    def scripts(self, value: Any) -> dict[str, str]:
        out: dict[str, str] = {}
        if value is None:
            return out
        if not isinstance(value, list):
            self.err("`scripts` must be a list of {name, content}", ("task", "scripts"))
            return out
        for i, s in enumerate(value):
            path: tuple[PathPart, ...] = ("task", "scripts", i)
            if not isinstance(s, dict) or not isinstance(s.get("name"), str) \
                    or not isinstance(s.get("content"), str):
                self.err("a script needs a `name` and a `content` (text)", path)
                continue
            self.unknown_keys(s, ("name", "content"), path, "script")
            if s["name"] in out:
                self.err(f"duplicate script name '{s['name']}'", (*path, "name"))
            out[s["name"]] = s["content"]
        return out

    def tasks(self, task: dict[str, Any], common: dict[str, Any],
              attributes: dict[str, Any]) -> list[dict[str, Any]]:
        scripts = self.scripts(task.get("scripts"))
        transform = task.get("transform")
        command = task.get("command")
        if transform is None:
            if command is None:
                self.err("the task has neither `transform` steps nor a `command`", ("task",),
                         "add `transform:` steps (write, submit, ...) or a `command:`",
                         at_key=True)
                return []
            return [{"name": "task", "command": command, **common,
                     **({"attributes": dict(attributes)} if attributes else {})}]
        if not isinstance(transform, list):
            self.err("`transform` must be a list of steps", ("task", "transform"))
            return []
        runs = self.runners(transform)
        out: list[dict[str, Any]] = []
        names: set[str] = set()
        pending: list[dict[str, Any]] = []  # write/stage steps not yet attached to a task
        of_file: dict[str, list[dict[str, Any]]] = {}  # filename -> its write/stage steps
        written: dict[str, dict[str, Any]] = {}  # filename -> its last write step
        waited: list[str] = []
        for i, step in enumerate(transform):
            path: tuple[PathPart, ...] = ("task", "transform", i)
            kind = self.step_kind(step, path)
            if kind is None:
                continue
            filename = step.get("filename")
            if not isinstance(filename, str) or not filename:
                self.err(f"a {kind} step needs a `filename`", path)
                continue
            if kind in ("write", "stage"):
                if not self.inside(filename, (*path, "filename"), kind):
                    continue
                if kind == "write":
                    if filename not in scripts:
                        near = suggest(filename, scripts)
                        self.err(f"no script named '{filename}' under task.scripts",
                                 (*path, "filename"), f"did you mean '{near}'?" if near else
                                 f"scripts: {', '.join(scripts) or 'none'}")
                        continue
                    executable = step.get("executable", False)
                    if not isinstance(executable, bool):
                        self.err("`executable` must be true or false", (*path, "executable"))
                        continue
                    new = {"name": "write", "path": filename, "content": scripts[filename],
                           "executable": executable}
                    written[filename] = new
                else:
                    new = {"name": "stage", "path": filename}
                self._origin[id(new)] = format_path((*path, "filename"))
                pending.append(new)
                of_file.setdefault(filename, []).append(new)
                continue
            for flag in ("wait", "watch"):
                if flag in step and not isinstance(step[flag], bool):
                    self.err(f"`{flag}` must be true or false", (*path, flag))
            name = _unique(_stem(filename), names)
            steps = pending + [s for s in of_file.get(filename, [])
                               if not any(s is p for p in pending)]
            attrs = dict(attributes)
            if step.get("watch") is True:
                attrs["watch"] = True
            entry: dict[str, Any] = {"name": name,
                                     "command": _command(filename, written.get(filename),
                                                         command if i in runs else None),
                                     **common}
            if attrs:
                entry["attributes"] = attrs
            if steps:
                entry["steps"] = self.copied(steps, len(out))
            if waited:
                entry["depends_on"] = list(waited)
            out.append(entry)
            pending = []
            if step.get("wait") is True:
                waited.append(name)
        if pending:
            # write/stage steps after the last submit: they still happen, as a task of their
            # own that runs nothing else (the staging directory was the point).
            entry = {"name": _unique("write-files", names),
                     "steps": self.copied(pending, len(out)), **common}
            if waited:
                entry["depends_on"] = list(waited)
            out.append(entry)
        if not out:
            self.err("the transform has no steps to run", ("task", "transform"))
        return out

    def copied(self, steps: list[dict[str, Any]], task: int) -> list[dict[str, Any]]:
        """Copies of ``steps`` for translated task ``task``, their origins noted."""
        for j, step in enumerate(steps):
            self.origins[f"tasks[{task}].steps[{j}]"] = self._origin[id(step)]
        return [dict(s) for s in steps]

    def step_kind(self, step: Any, path: tuple[PathPart, ...]) -> str | None:
        if not isinstance(step, dict) or "step" not in step:
            self.err("a transform step must be a mapping with `step:`", path,
                     f"supported steps: {_SUPPORTED_TEXT}")
            return None
        kind = step["step"]
        if kind not in SUPPORTED_STEPS:
            hint = f"supported steps: {_SUPPORTED_TEXT}"
            if kind == "auth":
                hint += ("; authenticate (e.g. log in to the service) before running "
                         "jobspec-do, it never handles credentials")
            elif (near := suggest(str(kind), SUPPORTED_STEPS)) is not None:
                hint = f"did you mean '{near}'? {hint}"
            self.err(f"unsupported transform step '{kind}'", (*path, "step"), hint)
            return None
        self.unknown_keys(step, _STEP_KEYS[kind], path, f"{kind} step")
        return str(kind)

    def runners(self, transform: list[Any]) -> set[int]:
        """Indexes of the submit/batch steps that run the task's ``command``.

        0.0.x ran ``command`` instead of the script when one was given: the submit/batch of
        the file the command names (``["/bin/bash", "job.sh"]`` -> the ``job.sh`` submit);
        when it names none of them, every submit/batch (what 0.0.x itself did).
        """
        command = self.data.get("task", {}).get("command")
        if command is None:
            return set()
        words = shlex.split(command) if isinstance(command, str) else [str(c) for c in command]
        said = {posixpath.normpath(w) for w in words}
        jobs = {i: s.get("filename") for i, s in enumerate(transform)
                if isinstance(s, dict) and s.get("step") in ("submit", "batch")}
        named = {i for i, f in jobs.items()
                 if isinstance(f, str) and posixpath.normpath(f) in said}
        return named or set(jobs)

    def inside(self, filename: str, path: tuple[PathPart, ...], kind: str) -> bool:
        """Written and staged paths stay inside the staging directory: no absolute path, no
        ``..`` out of it, and no symlink there that leads elsewhere."""
        hint = "use a path relative to the staging directory, e.g. `job.sh`"
        if posixpath.isabs(filename) or Path(filename).is_absolute():
            self.err(f"{kind} path '{filename}' is absolute: it would escape the staging "
                     "directory", path, hint)
            return False
        try:
            check_inside(self.root, filename)
        except OutsideError as exc:
            self.err(f"{kind} path '{filename}' escapes the staging directory "
                     f"({str(exc).split(': ', 1)[-1]})", path, hint)
            return False
        return True


def _command(filename: str, write: dict[str, Any] | None, command: Any) -> Any:
    """What a submit/batch of ``filename`` runs: the task's command if it is the one that
    runs it; the script itself if it was written executable; else its ``#!`` interpreter
    (the corpus scripts are bash, and /bin/sh may not be), else /bin/sh."""
    if command is not None:
        return command
    # ./ so that the script in the working directory is run, not one found on PATH.
    local = filename if "/" in filename else f"./{filename}"
    if write is not None and write.get("executable"):
        return [local]
    content = (write or {}).get("content") or ""
    if content.startswith("#!"):
        interpreter = shlex.split(content[2:].splitlines()[0])
        if interpreter:
            return [*interpreter, filename]
    return ["/bin/sh", filename]


def _slot_labels(tree: dict[str, Any]) -> list[str]:
    out = []
    stack = [tree]
    while stack:
        node = stack.pop(0)
        if node.get("type") == "slot" and isinstance(node.get("label"), str):
            out.append(node["label"])
        stack.extend(node.get("with") or [])
    return out


def _stem(filename: str) -> str:
    base = posixpath.basename(filename.rstrip("/")) or "task"
    stem = base.rsplit(".", 1)[0] if "." in base[1:] else base
    return stem or base


def _unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name}-{n}", n + 1
    taken.add(candidate)
    return candidate


def _scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool)
