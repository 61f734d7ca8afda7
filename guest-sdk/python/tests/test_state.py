"""Keyed state's lists (``sabot_agent.host``): what ``packed-state@0.1.1`` carries per call.

The host's side is faked: a module standing in for the bindings componentize-py generates, which
keeps entries in a dict and answers as the host does.
"""

import sys
import types
from dataclasses import dataclass
from typing import List

import pytest

from sabot_agent import host


@dataclass
class Packed:
    bytes: bytes
    ends: List[int]


@dataclass
class Values:
    values: Packed
    found: List[bool]


def strings(p: Packed) -> List[bytes]:
    starts = [0] + p.ends[:-1]
    return [p.bytes[a:b] for a, b in zip(starts, p.ends)]


@dataclass
class TooLarge:
    value: str


@pytest.fixture
def store(monkeypatch):
    entries = {}
    calls = []

    def get_many(name, keys):
        calls.append(("get", name, keys))
        s = strings(keys)
        found = [entries.get((name, k, sub)) for k, sub in zip(s[::2], s[1::2])]
        data = b"".join(v or b"" for v in found)
        ends, at = [], 0
        for v in found:
            at += len(v or b"")
            ends.append(at)
        return Values(Packed(data, ends), [v is not None for v in found])

    def put_many(name, packed):
        calls.append(("put", name, packed))
        if name == "full":
            raise Err(TooLarge("over the budget limits.state_mb"))
        s = strings(packed)
        for k, sub, v in zip(s[::3], s[1::3], s[2::3]):
            entries[(name, k, sub)] = v

    def delete_many(name, packed):
        calls.append(("delete", name, packed))
        s = strings(packed)
        for k, sub in zip(s[::2], s[1::2]):
            entries.pop((name, k, sub), None)

    class Err(Exception):
        def __init__(self, value):
            self.value = value

    errors = types.ModuleType("componentize_py_types")
    errors.Err = Err
    monkeypatch.setitem(sys.modules, "componentize_py_types", errors)

    fake = types.ModuleType("wit_world.imports.packed_state")
    fake.Packed, fake.get_many, fake.put_many, fake.delete_many = Packed, get_many, put_many, delete_many
    for name in ("wit_world", "wit_world.imports"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "wit_world.imports.packed_state", fake)
    return entries, calls


def test_a_batch_of_values_is_one_call_each_way_with_every_key_in_one_buffer(store):
    entries, calls = store
    seen = host.ValueState("seen")
    seen.set_many([(7, 1), ("card-8", {"n": 2}), (b"\x01", [1.5])])
    assert len(calls) == 1
    _, name, packed = calls[0]
    assert name == "seen"
    assert strings(packed) == [
        (7).to_bytes(8, "little", signed=True), b"", b"1",
        b"card-8", b"", b'{"n":2}',
        b"\x01", b"", b"[1.5]",
    ]
    assert seen.get_many([7, "absent", "card-8", b"\x01"]) == [1, None, {"n": 2}, [1.5]]
    assert len(calls) == 2
    seen.delete_many([7])
    assert seen.get(7) is None and seen.get("card-8") == {"n": 2}


def test_map_fields_are_sub_keys_and_empty_batches_make_no_call(store):
    entries, calls = store
    m = host.MapState("merchants")
    m.put_many([(1, "shop", 3), (1, "café", 4)])
    assert m.get_many([(1, "café"), (1, "shop"), (2, "shop")]) == [4, 3, None]
    m.remove_many([(1, "shop")])
    assert m.get_many([(1, "shop")]) == [None]
    before = len(calls)
    assert m.get_many([]) == [] and host.ValueState("v").get_many([]) == []
    m.put_many([])
    host.ValueState("v").set_many([])
    host.ValueState("v").delete_many([])
    assert len(calls) == before


def test_a_refused_call_is_an_agent_error_naming_the_store_and_the_reason(store):
    with pytest.raises(host.AgentError) as e:
        host.ValueState("full").set(1, 2)
    assert "state `full`: TooLarge: over the budget limits.state_mb" in str(e.value)
