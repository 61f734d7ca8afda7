"""The component's exports: turns an agent (see the package docs) into ``Handler`` and
``TimeHandler``, the classes componentize-py binds to the ``handler`` and ``time-handler``
interfaces. ``sabot_agent.build`` generates the app module that calls :func:`bind`."""

import inspect
import json
import traceback
from types import ModuleType
from typing import Any, List, Optional

from .arrow import ArrowError, RecordBatch, StreamDecoder, encode_batch
from .errors import AgentError
from .host import Timer


def find_agent(module: ModuleType) -> Any:
    """The agent a module defines: its one ``Agent`` subclass, or its ``process`` function."""
    from . import Agent

    classes = [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj) and issubclass(obj, Agent) and obj is not Agent and obj.__module__ == module.__name__
    ]
    if len(classes) == 1:
        return classes[0]
    if len(classes) > 1:
        names = ", ".join(c.__name__ for c in classes)
        raise TypeError(f"module {module.__name__} defines several agents ({names}); keep one per module")
    process = getattr(module, "process", None)
    if callable(process):
        return process
    raise TypeError(
        f"module {module.__name__} defines no agent: a subclass of sabot_agent.Agent or a function process(batch, port)"
    )


def bind(module: ModuleType):
    """The ``Handler`` and ``TimeHandler`` classes for the agent of ``module``."""
    from componentize_py_types import Err
    from wit_world.imports import types as wtypes
    from wit_world.imports import timers as wtimers

    # Imported now, while componentize-py pre-initialises the app: an interface first imported
    # later is missing from the component.
    from wit_world.imports import log, metrics, packed_state, state  # noqa: F401

    definition = find_agent(module)
    kinds = {
        "invalid-input": wtypes.ErrorKind.INVALID_INPUT,
        "invalid-config": wtypes.ErrorKind.INVALID_CONFIG,
        "internal": wtypes.ErrorKind.INTERNAL,
    }
    instance: List[Any] = [None]
    encoders: dict = {}
    decoders: dict = {}

    def report(e: BaseException, kind: str) -> Err:
        if isinstance(e, AgentError):
            return Err(wtypes.AgentError(kinds[e.kind], e.message, e.row))
        where = traceback.extract_tb(e.__traceback__)[-1] if e.__traceback__ else None
        at = f" (at {where.filename}:{where.lineno})" if where else ""
        return Err(wtypes.AgentError(kinds[kind], f"{type(e).__name__}: {e}{at}", None))

    def outputs(result: Any, answering: bool = False) -> List[Any]:
        # Batches without rows are dropped, except in answer to a batch without rows: the host's
        # question of what the agent returns, which an empty batch answers with its columns.
        if result is None:
            return []
        items = result if isinstance(result, list) else [result]
        out = []
        for item in items:
            if item is None:
                continue
            if isinstance(item, tuple):
                port, batch = item
            else:
                port, batch = 0, item
            if not isinstance(batch, RecordBatch) or not isinstance(port, int) or port < 0:
                raise TypeError(
                    f"an agent returns RecordBatches or (port, RecordBatch) pairs; got {type(item).__name__}"
                )
            if batch.num_rows == 0 and not answering:
                continue
            # The schema goes with a port's first batch and whenever it changes.
            sent = encoders.get(port)
            fresh = sent is None or sent != batch.schema
            encoders[port] = batch.schema
            out.append(wtypes.Output(port, encode_batch(batch, with_schema=fresh)))
        return out

    class Handler:
        def init(self, config: str) -> None:
            try:
                parsed = json.loads(config) if config else {}
                if inspect.isclass(definition):
                    instance[0] = definition(parsed)
                else:
                    instance[0] = definition
            except BaseException as e:  # noqa: BLE001 - every failure is reported, never a trap
                raise report(e, "invalid-config")
            encoders.clear()
            decoders.clear()

        def process(self, port: int, batch: bytes) -> List[Any]:
            agent = instance[0]
            try:
                decoder = decoders.get(port)
                if decoder is None:
                    decoder = decoders[port] = StreamDecoder()
                try:
                    data = decoder.decode(batch)
                except ArrowError as e:
                    raise AgentError.invalid_input(f"port {port}: not an Arrow IPC batch this SDK reads: {e}")
                answering = data.num_rows == 0
                if inspect.isfunction(agent):
                    return outputs(agent(data, port), answering)
                return outputs(agent.process(data, port), answering)
            except BaseException as e:  # noqa: BLE001
                raise report(e, "internal")

    class TimeHandler:
        def on_watermark(self, watermark: int) -> List[Any]:
            agent = instance[0]
            try:
                hook = getattr(agent, "on_watermark", None)
                return outputs(hook(watermark)) if hook and not inspect.isfunction(agent) else []
            except BaseException as e:  # noqa: BLE001
                raise report(e, "internal")

        def on_timers(self, timers: List[Any]) -> List[Any]:
            agent = instance[0]
            try:
                hook = getattr(agent, "on_timers", None)
                if not hook or inspect.isfunction(agent):
                    return []
                due = [
                    Timer(
                        "event-time" if t.domain == wtimers.TimeDomain.EVENT_TIME else "processing-time",
                        t.key,
                        t.ts,
                    )
                    for t in timers
                ]
                return outputs(hook(due))
            except BaseException as e:  # noqa: BLE001
                raise report(e, "internal")

    return Handler, TimeHandler
