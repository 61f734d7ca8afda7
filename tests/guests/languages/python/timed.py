"""Timers, log and metrics from Python: a timer per card at the end of each 10 s event-time window
it had a transaction in; when one fires, a row (card, fired_at)."""

from sabot_agent import Agent, RecordBatch, int64, keys_of, log, metrics, timers

WINDOW = 10_000


class Timed(Agent):
    def __init__(self, config):
        log.info("timed agent starting")

    def process(self, batch, port):
        keys = keys_of(batch, "card_id")
        ts = batch["ts"]
        timers.register_event_time([(k, (t // WINDOW + 1) * WINDOW) for k, t in zip(keys, ts)])
        metrics.counter_add("rows", len(keys))
        return None

    def on_timers(self, due):
        if timers.watermark() is None:
            raise RuntimeError("a timer fired before any watermark")
        return RecordBatch.from_columns(
            [
                ("card", int64, [int.from_bytes(t.key, "little", signed=True) for t in due]),
                ("fired_at", int64, [t.ts for t in due]),
            ]
        )
