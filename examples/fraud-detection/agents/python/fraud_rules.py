"""The fraud rules of ../../agent (Rust) in Python: over_limit, blacklisted_merchant,
high_risk_country, and velocity on the card's recent transactions, kept in keyed state.
Port 0: the flagged transactions with a ``reason`` column. Same config, same output.

Build: python -m sabot_agent.build fraud_rules.py -o fraud_rules_py.wasm
"""

import math

from sabot_agent import Agent, AgentError, RecordBatch, ValueState, keys_of, utf8


def column(batch: RecordBatch, name: str, type_name: str):
    try:
        field = batch.field(name)
    except KeyError:
        field = None
    if field is None or not repr(field.type).startswith(type_name):
        have = ", ".join(f"{f.name}: {f.type!r}" for f in batch.schema)
        raise AgentError.invalid_input(f"fraud-rules needs a column `{name}` of type {type_name}; the batch has {have}")
    return batch.column(name)


class FraudRules(Agent):
    def __init__(self, config):
        self.factor = config.get("over_limit_factor", 1.5)
        if not (isinstance(self.factor, (int, float)) and math.isfinite(self.factor) and self.factor > 0):
            raise AgentError.invalid_config(f"over_limit_factor must be a positive number, got {self.factor!r}")
        self.blacklist = set(config.get("blacklisted_merchants", []))
        self.high_risk = set(config.get("high_risk_countries", []))
        self.velocity = config.get("velocity")
        if self.velocity and not (self.velocity["max_transactions"] >= 1 and self.velocity["within_ms"] > 0):
            raise AgentError.invalid_config("velocity needs max_transactions ≥ 1 and within_ms > 0")
        # The event times of each card's latest transactions, oldest first.
        self.recent = ValueState("recent")

    def process(self, batch: RecordBatch, port: int):
        amount = column(batch, "amount", "float64")
        limit = column(batch, "card_limit", "float64")
        merchant = column(batch, "merchant_id", "utf8")
        country = column(batch, "country", "utf8")
        factor, blacklist, high_risk = self.factor, self.blacklist, self.high_risk

        velocity = self.velocity
        if velocity:
            column(batch, "card_id", "int64")
            cards = keys_of(batch, "card_id")
            times = column(batch, "ts", "timestamp")
            keys = list(dict.fromkeys(cards))
            recent = {k: (r or []) for k, r in zip(keys, self.recent.get_many(keys))}
            most, within = velocity["max_transactions"], velocity["within_ms"]

        rows, reasons = [], []
        for i, a in enumerate(amount):
            if a > limit[i] * factor:
                reason = "over_limit"
            elif merchant[i] in blacklist:
                reason = "blacklisted_merchant"
            elif country[i] in high_risk:
                reason = "high_risk_country"
            else:
                reason = None
            if velocity:
                ts = times[i]
                seen = [t for t in recent[cards[i]] if t > ts - within]
                if reason is None and len(seen) >= most:
                    reason = "velocity"
                if len(seen) >= most:
                    del seen[0]
                seen.append(ts)
                recent[cards[i]] = seen
            if reason is not None:
                rows.append(i)
                reasons.append(reason)
        if velocity:
            self.recent.set_many(recent.items())
        if not rows:
            return None
        return batch.take(rows).with_column("reason", utf8, reasons)
