// The `state` mode of the Rust `misbehave` guest (tests/guests/misbehave), in JavaScript, over
// the same stores with the same values: a swap between the two keeps each card's state.
//
// Per card: `seen` (a count), `sum` (of amounts), `mean` ([sum, count]), `amounts` (the list of
// amounts), `last` (the card itself) and the map `merchants` (merchant → count). Per batch, one
// row per card in order of first appearance: the card and its values after the batch.
import { tableFromArrays } from 'apache-arrow';
import { AgentError, MapState, ValueState, stringsOf } from '@sabot/agent';

function column(table, name, typeName) {
  const c = table.getChild(name);
  if (c === null || !String(c.type).startsWith(typeName)) {
    throw AgentError.invalidInput(`state mode needs a ${typeName} ${name}`);
  }
  return c;
}

export default class KeepState {
  constructor(config) {
    if (config.mode !== 'state') {
      throw AgentError.invalidConfig(
        `keep_state.js runs the mode "state" only, got ${JSON.stringify(config.mode)}`,
      );
    }
    this.seen = new ValueState('seen');
    this.sum = new ValueState('sum');
    this.mean = new ValueState('mean');
    this.amounts = new ValueState('amounts');
    this.last = new ValueState('last');
    this.merchants = new MapState('merchants');
  }

  process(table) {
    const cards = column(table, 'card_id', 'Int64').toArray();
    const amounts = column(table, 'amount', 'Float64').toArray();
    const merchants = stringsOf(column(table, 'merchant_id', 'Utf8'));

    // The batch folded per card, cards in order of first appearance.
    const slotOf = new Map();
    const order = [];
    const added = [];
    const pairs = new Map();
    for (let i = 0; i < cards.length; i++) {
      const card = cards[i];
      let slot = slotOf.get(card);
      if (slot === undefined) {
        slot = order.length;
        slotOf.set(card, slot);
        order.push(card);
        added.push([]);
      }
      added[slot].push(amounts[i]);
      const pair = `${card}\u0000${merchants[i]}`;
      const p = pairs.get(pair);
      if (p === undefined) pairs.set(pair, [card, merchants[i], 1]);
      else p[2] += 1;
    }

    const seen = this.seen.getMany(order);
    const sum = this.sum.getMany(order);
    const mean = this.mean.getMany(order);
    const lists = this.amounts.getMany(order);
    for (let s = 0; s < order.length; s++) {
      const batch = added[s];
      let partial = 0;
      for (const a of batch) partial += a;
      seen[s] = (seen[s] ?? 0) + batch.length;
      sum[s] = sum[s] === undefined ? partial : sum[s] + partial;
      const [ms, mn] = mean[s] ?? [0, 0];
      mean[s] = [ms + partial, mn + batch.length];
      lists[s] = (lists[s] ?? []).concat(batch);
    }
    this.seen.setMany(order.map((c, s) => [c, seen[s]]));
    this.sum.setMany(order.map((c, s) => [c, sum[s]]));
    this.mean.setMany(order.map((c, s) => [c, mean[s]]));
    this.amounts.setMany(order.map((c, s) => [c, lists[s]]));
    this.last.setMany(order.map((c) => [c, Number(c)]));

    const pairList = [...pairs.values()];
    const counts = this.merchants.getMany(pairList.map(([c, m]) => [c, m]));
    this.merchants.putMany(pairList.map(([c, m, n], i) => [c, m, (counts[i] ?? 0) + n]));

    const last = this.last.getMany(order);
    const distinct = new BigUint64Array(order.length);
    order.forEach((c, s) => {
      if (last[s] !== Number(c)) throw AgentError.internal('ValueState lost a write');
      distinct[s] = BigInt(this.merchants.entries(c).length);
    });
    return tableFromArrays({
      card_id: BigInt64Array.from(order),
      seen: BigUint64Array.from(seen, (n) => BigInt(n)),
      sum: Float64Array.from(sum),
      mean: Float64Array.from(mean, ([ms, mn]) => ms / mn),
      merchants: distinct,
      amounts: BigUint64Array.from(lists, (l) => BigInt(l.length)),
    });
  }
}
