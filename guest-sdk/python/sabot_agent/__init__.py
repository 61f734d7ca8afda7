"""Sabot agents in Python, built into WebAssembly components with componentize-py.

Write a class that derives from :class:`Agent`::

    from sabot_agent import Agent, RecordBatch, utf8

    class Big(Agent):
        def __init__(self, config):
            self.threshold = config.get("threshold", 500.0)

        def process(self, batch: RecordBatch, port: int):
            amounts = batch["amount"]
            rows = [i for i, a in enumerate(amounts) if a > self.threshold]
            return batch.take(rows) if rows else None

then ``python -m sabot_agent.build big.py -o big.wasm``. A module-level function
``process(batch, port)`` works too, for a stateless transform.

``process`` returns what to emit: ``None``, a batch (port 0), or a list of batches and
``(port, batch)`` pairs. Raise :class:`AgentError` for bad input or configuration; any other
exception is reported to the host as an internal error of the agent, never a trap.

A module of functions that SQL calls (``CREATE FUNCTION``, ``CREATE AGGREGATE``) declares them
with :func:`function`, :func:`aggregate` and :func:`functions` (see ``sabot_agent.function``).
"""

from .arrow import (
    ArrowError,
    Column,
    DataType,
    Field,
    RecordBatch,
    binary,
    bool_,
    date32,
    date64,
    float32,
    float64,
    int8,
    int16,
    int32,
    int64,
    large_binary,
    large_utf8,
    list_,
    null,
    timestamp,
    uint8,
    uint16,
    uint32,
    uint64,
    utf8,
)
from .errors import AgentError
from .function import Function, aggregate, function, functions
from .keys import keys_of, state_key
from .host import MapState, Timer, ValueState, log, metrics, timers

__all__ = [
    "Agent",
    "AgentError",
    "ArrowError",
    "Column",
    "DataType",
    "Field",
    "Function",
    "MapState",
    "RecordBatch",
    "Timer",
    "ValueState",
    "aggregate",
    "function",
    "functions",
    "keys_of",
    "log",
    "metrics",
    "state_key",
    "timers",
    "binary",
    "bool_",
    "date32",
    "date64",
    "float32",
    "float64",
    "int8",
    "int16",
    "int32",
    "int64",
    "large_binary",
    "large_utf8",
    "list_",
    "null",
    "timestamp",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "utf8",
]


class Agent:
    """Base class of an agent. ``__init__(config)`` gets the agent's ``config`` table as a dict."""

    def __init__(self, config: dict) -> None:
        pass

    def process(self, batch: RecordBatch, port: int):
        """Handles one batch that arrived on input ``port``; returns what to emit."""
        raise NotImplementedError

    def on_watermark(self, watermark: int):
        """The watermark (ms since the epoch) advanced; returns what to emit."""
        return None

    def on_timers(self, timers: "list[Timer]"):
        """Event-time timers are due, in time order; returns what to emit."""
        return None
