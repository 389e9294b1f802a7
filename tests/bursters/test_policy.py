"""The burst policy: the `burst:` config (typed settings, errors with file and line), --burst,
the default selector (attribute `burstable`, inherited) and ordering, and their replacement
by `module:function`; and what a place can take (Capacity)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dodo_jobspec.bursters.base import Capacity, from_record
from dodo_jobspec.bursters.flux import FluxBurster
from dodo_jobspec.bursters.flux_local import FluxLocalBurster
from dodo_jobspec.bursters.policy import build, in_order, is_burstable
from dodo_jobspec.errors import SpecError
from dodo_jobspec.spec.model import Counts, Resource, ResourceRequest
from tests.helpers import load_text


def _config(folder: Path, text: str) -> Path:
    path = folder / "jobspec-do.yaml"
    path.write_text(text)
    return path


def _entries(path: Path) -> list:
    from dodo_jobspec.config import load

    return load(path.parent / "spec.yaml", path).burst


def test_settings_are_typed_from_the_config(tmp_path: Path) -> None:
    path = _config(tmp_path, "burst:\n- {plugin: flux, name: big, uri: 'local:///x', "
                             "after: 1.5m}\n- {plugin: flux-local, size: '3'}\n")
    policy = build(_entries(path), config_path=path)
    big, local = policy.bursters
    assert isinstance(big, FluxBurster) and big.label == "big"
    assert big.settings.after == 90.0 and big.settings.uri == "local:///x"
    assert isinstance(local, FluxLocalBurster) and local.settings.size == 3
    assert local.label == "flux-local" and local.settings.after is None
    # What a record keeps rebuilds the same burster.
    again = from_record(big.to_record())
    assert type(again) is FluxBurster and again.settings == big.settings


def test_config_errors_name_the_file_line_and_fix(tmp_path: Path) -> None:
    path = _config(tmp_path, "burst:\n- {plugin: flux, aftr: 3s}\n- {plugin: fluxx}\n"
                             "- {plugin: flux-local, size: many}\n- {uri: x}\n"
                             "burst_order: nosuch.module:f\n")
    with pytest.raises(SpecError) as err:
        build(_entries(path), config_path=path, order="nosuch.module:f")
    text = "\n".join(p.render() for p in err.value.problems)
    assert f"{path}:2:" in text and "no setting 'aftr'" in text and "did you mean 'after'" in text
    assert f"{path}:3:" in text and "unknown burst plugin 'fluxx'" in text
    assert f"{path}:4:" in text and "expected a number, not 'many'" in text
    assert f"{path}:5:" in text and "needs `plugin:`" in text
    assert f"{path}:6:" in text and "burst_order nosuch.module:f: cannot be imported" in text


def test_burst_names_pick_and_order_the_bursters(tmp_path: Path) -> None:
    path = _config(tmp_path, "burst:\n- {plugin: flux, name: a, uri: x}\n"
                             "- {plugin: flux, name: b, uri: y}\n")
    policy = build(_entries(path), config_path=path, names=["b", "local", "a"])
    assert [b.label for b in policy.bursters] == ["b", "local", "a"]
    with pytest.raises(SpecError) as err:
        build(_entries(path), config_path=path, names=["bb"])
    assert "no burster 'bb'" in str(err.value.problems[0].render())
    assert "did you mean 'b'" in err.value.problems[0].render()


def test_burstable_is_inherited_from_groups(tmp_path: Path) -> None:
    spec = load_text(tmp_path, """
        version: 1
        groups:
        - name: g
          attributes: {burstable: true}
          tasks:
          - {name: inside, command: [true]}
          - {name: opted-out, command: [true], attributes: {burstable: false}}
        tasks:
        - {group: g}
        - {name: alone, command: [true]}
        """)
    assert is_burstable(spec.find("inside")[0])
    assert not is_burstable(spec.find("opted-out")[0])
    assert not is_burstable(spec.find("alone")[0])


def test_selector_and_ordering_are_replaced_by_module_functions(tmp_path: Path) -> None:
    path = _config(tmp_path, "burst:\n- {plugin: flux, name: a, uri: x}\n"
                             "- {plugin: flux, name: b, uri: y}\n")
    default = build(_entries(path), config_path=path)
    assert default.selector is is_burstable and default.ordering is in_order
    policy = build(_entries(path), config_path=path, selector="tests.bursters.rules:named_big",
                   order="tests.bursters.rules:reversed_order")
    spec = load_text(tmp_path, """
        version: 1
        tasks:
        - {name: big-one, command: [true]}
        - {name: small, command: [true], attributes: {burstable: true}}
        """)
    big, small = spec.find("big-one")[0], spec.find("small")[0]
    assert policy.selected(big) and not policy.selected(small)
    assert [b.label for b in policy.candidates(big)] == ["b", "a"]


def _req(nodes: int, slots: int, cores: int, gpus: int = 0) -> ResourceRequest:
    return ResourceRequest(None, Resource("node", max(nodes, 1)),
                           Counts(nodes, slots, cores, gpus))


def test_capacity_refuses_what_no_placement_can_satisfy() -> None:
    cap = Capacity(nodes=2, cores_per_node=4)
    assert cap.refuses(_req(2, 2, 4)) is None
    assert "3 node(s), this has 2" in (cap.refuses(_req(3, 3, 1)) or "")
    assert "6 core(s) per node" in (cap.refuses(_req(1, 2, 3)) or "")
    assert "a slot asks for 5 core(s)" in (cap.refuses(_req(0, 1, 5)) or "")
    assert "9 core(s), this has 8" in (cap.refuses(_req(0, 9, 1)) or "")
    assert "gpu" in (cap.refuses(_req(1, 1, 1, gpus=1)) or "")
