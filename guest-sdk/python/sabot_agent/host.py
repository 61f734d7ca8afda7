"""What the host offers an agent: logging, metrics, keyed state and timers.

Every call crosses the sandbox boundary: call these per batch, not per row. The imports come from
the bindings componentize-py generates (``wit_world``); they exist only inside a component.
"""

import json
from itertools import accumulate
from dataclasses import dataclass
from typing import Any, Callable, Iterable, List, Optional, Sequence, Tuple

from .errors import AgentError
from .keys import Key, state_key


def _wit(name: str):
    """The bindings of host interface ``name``. Looked up when first used, so that this package
    also imports outside a component (its tests); they were loaded while the app was built
    (``sabot_agent.runtime.bind`` imports them all: the sandbox has no file system to import from
    later)."""
    import importlib

    return importlib.import_module(f"wit_world.imports.{name}")


class _Log:
    """Structured log lines, tagged by the host with the pipeline, agent and instance."""

    def _at(self, level: str, message: str) -> None:
        wlog = _wit("log")
        wlog.log(getattr(wlog.Level, level), str(message))

    def trace(self, message: str) -> None:
        self._at("TRACE", message)

    def debug(self, message: str) -> None:
        self._at("DEBUG", message)

    def info(self, message: str) -> None:
        self._at("INFO", message)

    def warn(self, message: str) -> None:
        self._at("WARN", message)

    def error(self, message: str) -> None:
        self._at("ERROR", message)


class _Metrics:
    """Agent-defined metrics, exported by the host beside its own."""

    def counter_add(self, name: str, delta: int = 1) -> None:
        _wit("metrics").counter_add(name, int(delta))

    def gauge_set(self, name: str, value: float) -> None:
        _wit("metrics").gauge_set(name, float(value))

    def histogram_record(self, name: str, value: float) -> None:
        _wit("metrics").histogram_record(name, float(value))


log = _Log()
metrics = _Metrics()


def _json_encode(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _json_decode(data: bytes) -> Any:
    return json.loads(data)


def _pack(strings: List[bytes]):
    """packed-state's ``packed`` record of ``strings``: the bytes end to end, and where each ends
    (one buffer and one list per call, whatever the number of entries)."""
    return _wit("packed_state").Packed(b"".join(strings), list(accumulate(map(len, strings))))


def _unpack(found, decode: Callable[[bytes], Any]) -> List[Any]:
    """The values a ``get-many`` found, decoded; ``None`` where an entry is absent."""
    data, ends = found.values.bytes, found.values.ends
    starts = [0] + ends[:-1]
    return [decode(data[a:b]) if there else None for a, b, there in zip(starts, ends, found.found)]


def _state_call(store: str, f: Callable[[], Any]) -> Any:
    from componentize_py_types import Err

    try:
        return f()
    except Err as e:
        raise AgentError.internal(f"state `{store}`: {type(e.value).__name__}: {e.value.value}") from None


class ValueState:
    """One value per key, kept by the host (RocksDB by default), checkpointed with the pipeline.

    Values are JSON by default; give ``encode``/``decode`` for another format (bytes in and out).
    Keys are ``bytes`` from :func:`keys_of`, or ints (Int64 keys) and strs.
    """

    def __init__(self, name: str, encode: Callable[[Any], bytes] = _json_encode,
                 decode: Callable[[bytes], Any] = _json_decode):
        self.name = name
        self._encode = encode
        self._decode = decode

    def get_many(self, keys: Sequence[Key]) -> List[Any]:
        """The values of ``keys``, in order (``None`` where there is none): one host call."""
        if not keys:
            return []
        packed = _pack([s for k in keys for s in (state_key(k), b"")])
        found = _state_call(self.name, lambda: _wit("packed_state").get_many(self.name, packed))
        return _unpack(found, self._decode)

    def set_many(self, entries: Iterable[Tuple[Key, Any]]) -> None:
        """Writes ``(key, value)`` pairs: one host call."""
        enc = self._encode
        strings = [s for k, v in entries for s in (state_key(k), b"", enc(v))]
        if strings:
            packed = _pack(strings)
            _state_call(self.name, lambda: _wit("packed_state").put_many(self.name, packed))

    def delete_many(self, keys: Sequence[Key]) -> None:
        if keys:
            packed = _pack([s for k in keys for s in (state_key(k), b"")])
            _state_call(self.name, lambda: _wit("packed_state").delete_many(self.name, packed))

    def get(self, key: Key) -> Any:
        return self.get_many([key])[0]

    def set(self, key: Key, value: Any) -> None:
        self.set_many([(key, value)])

    def delete(self, key: Key) -> None:
        self.delete_many([key])


class MapState:
    """Many fields (strs) per key."""

    def __init__(self, name: str, encode: Callable[[Any], bytes] = _json_encode,
                 decode: Callable[[bytes], Any] = _json_decode):
        self.name = name
        self._encode = encode
        self._decode = decode

    def get_many(self, pairs: Sequence[Tuple[Key, str]]) -> List[Any]:
        if not pairs:
            return []
        packed = _pack([s for k, f in pairs for s in (state_key(k), f.encode())])
        found = _state_call(self.name, lambda: _wit("packed_state").get_many(self.name, packed))
        return _unpack(found, self._decode)

    def put_many(self, triples: Iterable[Tuple[Key, str, Any]]) -> None:
        enc = self._encode
        strings = [s for k, f, v in triples for s in (state_key(k), f.encode(), enc(v))]
        if strings:
            packed = _pack(strings)
            _state_call(self.name, lambda: _wit("packed_state").put_many(self.name, packed))

    def remove_many(self, pairs: Sequence[Tuple[Key, str]]) -> None:
        if pairs:
            packed = _pack([s for k, f in pairs for s in (state_key(k), f.encode())])
            _state_call(self.name, lambda: _wit("packed_state").delete_many(self.name, packed))

    def entries(self, key: Key) -> List[Tuple[str, Any]]:
        """Every ``(field, value)`` of ``key``, in field order."""
        wstate = _wit("state")
        k = state_key(key)
        out: List[Tuple[str, Any]] = []
        after: Optional[bytes] = None
        while True:
            page = _state_call(self.name, lambda: wstate.scan(self.name, k, b"", after, 1024))
            out.extend((sub.decode(), self._decode(v)) for sub, v in page)
            if len(page) < 1024:
                return out
            after = page[-1][0]


@dataclass
class Timer:
    """A due timer: ``domain`` is ``"event-time"`` or ``"processing-time"``; ``ts`` in ms."""

    domain: str
    key: bytes
    ts: int


class _Timers:
    """Timers kept by the host per key; event-time ones fire through ``Agent.on_timers``."""

    def _list(self, domain: str, pairs: Iterable[Tuple[Key, int]]):
        wtimers = _wit("timers")
        d = wtimers.TimeDomain.EVENT_TIME if domain == "event-time" else wtimers.TimeDomain.PROCESSING_TIME
        return [wtimers.Timer(d, state_key(k), int(ts)) for k, ts in pairs]

    def register_event_time(self, pairs: Iterable[Tuple[Key, int]]) -> None:
        """Registers ``(key, ms)`` event-time timers."""
        _state_call("timers", lambda: _wit("timers").register(self._list("event-time", pairs)))

    def register_processing_time(self, pairs: Iterable[Tuple[Key, int]]) -> None:
        """Registers ``(key, ms since the epoch)`` processing-time timers."""
        _state_call("timers", lambda: _wit("timers").register(self._list("processing-time", pairs)))

    def delete(self, timers: Iterable[Timer]) -> None:
        wtimers = _wit("timers")
        items = [
            wtimers.Timer(
                wtimers.TimeDomain.EVENT_TIME if t.domain == "event-time" else wtimers.TimeDomain.PROCESSING_TIME,
                state_key(t.key),
                t.ts,
            )
            for t in timers
        ]
        _state_call("timers", lambda: wtimers.delete(items))

    def watermark(self) -> Optional[int]:
        """The instance's watermark in ms, or ``None`` before the inputs have one."""
        return _wit("timers").watermark()


timers = _Timers()
