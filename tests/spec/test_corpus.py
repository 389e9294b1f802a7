"""Every file of the shared JobSpec corpus and every example of the spec document is pinned:
it either validates, or fails with the specific problem it really has."""

from __future__ import annotations

from pathlib import Path

import pytest

from dodo_jobspec import SpecError, load
from tests.helpers import ONE_CORE, REFERENCE

CORPUS = REFERENCE / "corpus"
DRAFT2 = Path(__file__).resolve().parents[1] / "specs" / "draft2"

# file -> None (valid) or the fragment the first problem must contain
EXPECTED: dict[str, str | None] = {
    "examples__depends_on__jobspec.yaml": None,
    "examples__flux__jobspec.yaml": None,
    "group-with-group.yaml": None,
    "hello-world-jobspec.yaml": None,
    "jobspec-spack-subystem-satisfied.yaml": None,
    "jobspec-spack-subystem-unsatisfied.yaml": None,
    "machine-learning.yaml": None,
    "task-with-group.yaml": None,
    "jobspec-go/examples__nextgen__v1__example1__jobspec.yaml": "unknown resource 'common'",
    "launch-v2/hierarchy.yaml": "Flux hierarchy config",
    "launch-v2/hierarchy-flat.yaml": "Flux hierarchy config",
    "launch-v2/hierarchy-one.yaml": "Flux hierarchy config",
    "launch-v2/hierarchy-two.yaml": "Flux hierarchy config",
    "legacy-0.0.11/examples__flux__jobspec.yaml": None,  # translated from 0.0.x
    "legacy-0.0.11/hello-world-batch.yaml": None,
    "legacy-0.0.11/hello-world-jobspec.yaml": None,
    "legacy-0.0.11/hello-world-wait-jobspec.yaml": None,
}

# The older draft's own examples (spec-draft-2.md, in order). Several are fragments or have
# indentation slips; each is pinned to what is really wrong with it.
DRAFT2_EXPECTED: dict[str, str | None] = {
    # command indented under resources: 'unknown key' is reported too, on its later line
    "example-00.yaml": "task 'ior' has no command",
    "example-01.yaml": None,
    "example-02.yaml": "missing required key 'version'",  # a fragment
    "example-03.yaml": "YAML syntax error",  # mis-indented `- local: true`
    "example-04.yaml": "YAML syntax error",  # mis-indented `with:`
    "example-05.yaml": None,
    "example-06.yaml": None,
    "example-07.yaml": None,
    "example-08.yaml": None,
    "example-09.yaml": "unknown key 'duration'",  # top-level `duration:` block
    "example-10.yaml": "unknown attribute 'envirionment'",  # the draft's own typo
    "example-11.yaml": None,
    "example-12.yaml": None,
    "example-13.yaml": "missing required key 'version'",
    "example-14.yaml": "must be a mapping",  # a steps fragment
    "example-15.yaml": "must be a mapping",
    "example-16.yaml": "YAML syntax error",
    "example-17.yaml": "YAML syntax error",
}


def test_corpus_listing_is_complete() -> None:
    on_disk = {str(p.relative_to(CORPUS)) for p in CORPUS.rglob("*.yaml")}
    assert on_disk == set(EXPECTED), "a corpus file is not pinned by this test"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_file(name: str) -> None:
    _check(CORPUS / name, EXPECTED[name])


@pytest.mark.parametrize("name", sorted(DRAFT2_EXPECTED))
def test_spec_document_example(name: str) -> None:
    _check(DRAFT2 / name, DRAFT2_EXPECTED[name])


def test_draft2_examples_are_all_pinned() -> None:
    assert {p.name for p in DRAFT2.glob("*.yaml")} == set(DRAFT2_EXPECTED)


def _check(path: Path, expected: str | None) -> None:
    if expected is None:
        spec = load(path, default_resources=ONE_CORE)
        assert spec.nodes
        return
    with pytest.raises(SpecError) as info:
        load(path, default_resources=ONE_CORE)
    first = info.value.problems[0]
    assert expected in first.message, first.render()
    assert first.file == str(path)
