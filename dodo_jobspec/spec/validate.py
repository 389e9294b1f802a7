"""Check a spec document against the JSON Schema and reword every error for a person.

jsonschema's own messages name schema internals ("is not valid under any of the given schemas");
here each error becomes a Problem that names the spec path, says what was expected, and suggests
the near name for a typo. All errors are collected, not only the first.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
from collections.abc import Iterator
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

import fastjsonschema

from ..errors import Problem, suggest
from .source import Document, remember, remembered

if TYPE_CHECKING:  # jsonschema is imported only when a spec is invalid: it costs 40 ms
    from jsonschema import Draft202012Validator, ValidationError

# Keys that belong under `attributes:`; people often write them one level too high.
ATTRIBUTE_KEYS = frozenset({"duration", "cwd", "environment", "env", "watch"})
TASK_KEYS = frozenset({"command", "depends_on", "replicas", "steps", "local", "group", "name"})
# jobspec-do extensions: accepted by default, rejected by --strict.
EXTENSION_KEYS = frozenset({"inputs", "outputs"})

_TYPE_NAMES = {"object": "a mapping", "array": "a list", "string": "a string",
               "integer": "a whole number", "number": "a number", "boolean": "true or false",
               "null": "nothing"}


@cache
def load_schema(strict: bool = False) -> dict[str, Any]:
    """The packaged JSON Schema: jobspec-do's dialect, or the upstream spec alone if strict."""
    return json.loads(_schema_text(strict))


@cache
def _schema_text(strict: bool) -> str:
    name = "jobspec-strict.schema.json" if strict else "jobspec.schema.json"
    return resources.files("dodo_jobspec.spec").joinpath("schema", name).read_text()


@cache
def _valid_mark(strict: bool) -> str:
    """Names "valid against this schema, as this validator checks it" in the parse cache."""
    from fastjsonschema.version import VERSION

    h = hashlib.sha1(f"{VERSION}\n{_schema_text(strict)}".encode()).hexdigest()[:16]
    return f"valid-{h}"


@cache
def _validator(strict: bool) -> Draft202012Validator:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(load_schema(strict))


@cache
def _fast(strict: bool) -> Any:
    return fastjsonschema.compile(load_schema(strict))


def is_valid(data: Any, strict: bool = False) -> bool:
    """Fast yes/no check (compiled validator): the common, valid case costs milliseconds."""
    try:
        _fast(strict)(data)
    except fastjsonschema.JsonSchemaException:
        return False
    return True


def schema_problems(doc: Document, strict: bool = False) -> list[Problem]:
    """Every schema violation in ``doc`` as a reworded Problem, in file order.

    That content is valid is remembered beside its parse-cache entry: a large spec loaded
    again skips compiling the validator and validating (half of loading 10,000 tasks)."""
    marker = remembered(doc, _valid_mark(strict))
    if marker is not None and os.path.exists(marker):
        return []
    if is_valid(doc.data, strict):
        if marker is not None:
            remember(marker)
        return []
    validator = _validator(strict)
    problems: list[Problem] = []
    for error in validator.iter_errors(doc.data):
        problems.extend(_explain(doc, _pick(error), strict))
    problems.sort(key=lambda p: (p.line or 0, p.column or 0, p.message))
    return _dedupe(problems)


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen: set[tuple[Any, ...]] = set()
    out = []
    for p in problems:
        key = (p.path, p.message)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


def _pick(error: ValidationError) -> ValidationError:
    """For anyOf/oneOf errors, descend into the alternative the author most likely meant."""
    while error.validator in ("anyOf", "oneOf") and error.context:
        branches: dict[int, list[ValidationError]] = {}
        for sub in error.context:
            branches.setdefault(sub.relative_schema_path[0], []).append(sub)
        # A branch whose errors are all below the top (the type matched) is the intended one.
        def score(errs: list[ValidationError]) -> tuple[int, int]:
            top_type_miss = any(e.validator == "type" and not e.relative_path for e in errs)
            depth = max(len(e.relative_path) for e in errs)
            return (0 if top_type_miss else 1, depth)
        best = max(branches.values(), key=score)
        if score(best)[0] == 0:
            return error  # no alternative has the right type: report the anyOf itself
        error = max(best, key=lambda e: len(e.relative_path))
    return error


def _explain(doc: Document, error: ValidationError, strict: bool) -> Iterator[Problem]:
    path = list(error.absolute_path)
    inst = error.instance
    v = error.validator
    if v == "additionalProperties":
        allowed = set(error.schema.get("properties", {}))
        for key in sorted(set(inst) - allowed, key=str):
            yield doc.problem(f"unknown key '{key}'", [*path, key],
                              _unknown_key_hint(str(key), allowed, path, strict), at_key=True)
    elif v == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        yield doc.problem(f"missing required key '{missing}'", path, _required_hint(missing))
    elif v == "type" or (v in ("anyOf", "oneOf")):
        yield doc.problem(_type_message(error), path, _type_hint(path, inst))
    elif v in ("enum", "const"):
        allowed = error.validator_value if v == "enum" else [error.validator_value]
        hint = None
        if isinstance(inst, str) and (near := suggest(inst, [str(a) for a in allowed])):
            hint = f"did you mean '{near}'?"
        if path and path[-1] == "version":
            hint = "jobspec-do reads version 1 JobSpecs (version 2 is a Flux hierarchy config)"
        what = ", ".join(json.dumps(a, default=repr) for a in allowed)
        shown = json.dumps(inst, default=repr)  # a !!binary value is bytes
        yield doc.problem(f"{shown} is not allowed here (expected {what})", path, hint)
    elif v == "propertyNames":
        yield doc.problem(f"'{inst}' is not a valid name", path,
                          "names use letters, digits, '.', '_' and '-'")
    elif v == "pattern":
        yield doc.problem(_pattern_message(path, inst), path, None)
    elif v in ("minimum", "exclusiveMinimum"):
        yield doc.problem(f"{inst} is too small (the least allowed is {error.validator_value})",
                          path)
    elif v in ("maximum", "exclusiveMaximum"):
        yield doc.problem(f"{inst} is too large (the most allowed is {error.validator_value})",
                          path, "a task expands to at most this many replicas; split the "
                          "work into several tasks, or let each replica do more of it"
                          if path and path[-1] == "replicas" else None)
    elif v == "minItems":
        yield doc.problem("must not be an empty list", path)
    elif v == "minLength":
        yield doc.problem("must not be empty", path)
    else:  # pragma: no cover - a schema keyword this module does not word yet
        yield doc.problem(error.message, path)


def _unknown_key_hint(key: str, allowed: set[str], path: list[Any], strict: bool) -> str:
    if strict and key in EXTENSION_KEYS | {"attributes"} | ATTRIBUTE_KEYS:
        return f"'{key}' is a jobspec-do extension or older-draft key; drop --strict to allow it"
    near = suggest(key, allowed)
    if near:
        return f"did you mean '{near}'?"
    parent = next((p for p in reversed(path) if isinstance(p, str)), None)
    if key in TASK_KEYS and parent not in (None, "tasks"):
        return (f"'{key}' is a task key; it is indented under '{parent}:' here: "
                "line it up with the task's other keys")
    if key in ATTRIBUTE_KEYS and "attributes" in allowed:
        return f"move '{key}' under 'attributes:'"
    if key == "commands" and path and path[-1] != "tasks":
        return "a group runs one-off commands as tasks with `local: true`"
    return "allowed keys here: " + ", ".join(sorted(allowed))


def _required_hint(missing: str) -> str | None:
    if missing == "version":
        return "add `version: 1` at the top of the file"
    if missing == "type":
        return "every resource needs a type such as node, slot, core or gpu"
    return None


def _type_message(error: ValidationError) -> str:
    expected = error.validator_value if error.validator == "type" else None
    if expected is None:
        # A branch's "type" is a name or a list of names.
        kinds = {k for s in error.validator_value if isinstance(s, dict)
                 for k in (s["type"] if isinstance(s.get("type"), list) else [s.get("type")])}
        refs = [s["$ref"].rsplit("/", 1)[-1] for s in error.validator_value if "$ref" in s]
        expected = sorted(k for k in kinds if isinstance(k, str)) + [
            "object" if r in ("resource", "requires_mapping") else r for r in refs]
    if isinstance(expected, str):
        expected = [expected]
    want = " or ".join(dict.fromkeys(_TYPE_NAMES.get(t, t) for t in expected))
    return f"expected {want}, got {_describe(error.instance)}"


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"{str(value).lower()}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (an empty value)"
    if isinstance(value, str):
        return f"the string {json.dumps(value)}"
    if isinstance(value, datetime.date):
        return f"a date ({value.isoformat()}: YAML reads a plain 2024-01-01 as one)"
    return f"{type(value).__name__} {value!r}"


def _type_hint(path: list[Any], inst: Any) -> str | None:
    last = path[-1] if path else None
    if isinstance(inst, datetime.date):
        return f"quote it to keep it as text: \"{inst.isoformat()}\""
    if isinstance(inst, bool):
        return ("quote it to keep it as text (\"on\", \"yes\"): YAML reads unquoted yes, no, "
                "on, off, true and false as booleans")
    if last in ("depends_on", "inputs", "outputs") and isinstance(inst, str):
        return f"write a list: {last}: [{inst}]"
    if last == "with" and isinstance(inst, dict):
        return "`with:` is a list of resources: put '- ' before `type:`"
    if last == "duration":
        return "write seconds (300) or a duration string (300s, 5m, 1.5h, 2d)"
    if last == "command" and isinstance(inst, list):
        return "every item of a command list must be a string: quote numbers and flags"
    if last == "environment" or (len(path) >= 2 and path[-2] == "environment"):
        return "environment is a mapping of NAME: value"
    if inst is None and isinstance(last, int):
        return "a list item with no value (a lone `-`, or `~`); remove it or give it one"
    if inst is None:
        return "the key is there but has no value; remove it or give it one"
    return None


def _pattern_message(path: list[Any], inst: Any) -> str:
    last = path[-1] if path else None
    if last == "duration":
        return f"{json.dumps(inst)} is not a duration (write 300, 300s, 5m, 1.5h or 2d)"
    if last in ("resources", "requires"):
        return f"{json.dumps(inst)} is not a valid reference (write name or name-a|name-b)"
    return f"{json.dumps(inst)} has the wrong form"
