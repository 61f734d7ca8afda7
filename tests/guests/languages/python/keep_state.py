"""The ``state`` mode of the Rust ``misbehave`` guest (tests/guests/misbehave), in Python, over the
same stores with the same values: a swap between them keeps each card's state.

Per card: ``seen`` (a count), ``sum`` (of amounts), ``mean`` ([sum, count]), ``amounts`` (the list
of amounts), ``last`` (the card itself) and the map ``merchants`` (merchant → count). Per batch, one
row per card in order of first appearance: the card and its values after the batch.
"""

from sabot_agent import (Agent, AgentError, MapState, RecordBatch, ValueState, float64, int64,
                         uint64)


class KeepState(Agent):
    def __init__(self, config):
        if config.get("mode") != "state":
            raise AgentError.invalid_config(f"keep_state.py runs the mode \"state\" only, got {config.get('mode')!r}")
        self.seen = ValueState("seen")
        self.sum = ValueState("sum")
        self.mean = ValueState("mean")
        self.amounts = ValueState("amounts")
        self.last = ValueState("last")
        self.merchants = MapState("merchants")

    def process(self, batch: RecordBatch, port: int):
        cards = batch["card_id"]
        amounts = batch["amount"]
        merchants = batch["merchant_id"]

        # The batch folded per card, cards in order of first appearance.
        added = {}
        pairs = {}
        for card, amount, merchant in zip(cards, amounts, merchants):
            added.setdefault(card, []).append(amount)
            pairs[(card, merchant)] = pairs.get((card, merchant), 0) + 1
        order = list(added)

        seen = self.seen.get_many(order)
        total = self.sum.get_many(order)
        mean = self.mean.get_many(order)
        lists = self.amounts.get_many(order)
        for s, card in enumerate(order):
            batch_amounts = added[card]
            partial = 0.0
            for a in batch_amounts:
                partial += a
            seen[s] = (seen[s] or 0) + len(batch_amounts)
            total[s] = partial if total[s] is None else total[s] + partial
            ms, mn = mean[s] or [0.0, 0]
            mean[s] = [ms + partial, mn + len(batch_amounts)]
            lists[s] = (lists[s] or []) + batch_amounts
        self.seen.set_many(zip(order, seen))
        self.sum.set_many(zip(order, total))
        self.mean.set_many(zip(order, mean))
        self.amounts.set_many(zip(order, lists))
        self.last.set_many((c, c) for c in order)

        pair_list = list(pairs.items())
        counts = self.merchants.get_many([p for p, _ in pair_list])
        self.merchants.put_many((c, m, (counts[i] or 0) + n) for i, ((c, m), n) in enumerate(pair_list))

        last = self.last.get_many(order)
        distinct = []
        for s, card in enumerate(order):
            if last[s] != card:
                raise AgentError.internal("ValueState lost a write")
            distinct.append(len(self.merchants.entries(card)))
        return RecordBatch.from_columns([
            ("card_id", int64, order),
            ("seen", uint64, seen),
            ("sum", float64, total),
            ("mean", float64, [ms / mn for ms, mn in mean]),
            ("merchants", uint64, distinct),
            ("amounts", uint64, [len(l) for l in lists]),
        ])
