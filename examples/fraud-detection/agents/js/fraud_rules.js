// The fraud rules of ../../agent (Rust) in JavaScript: over_limit, blacklisted_merchant,
// high_risk_country, and velocity on the card's recent transactions, kept in keyed state.
// Port 0: the flagged transactions with a `reason` column. Same config, same output.
//
// Build: node ../../../../guest-sdk/js/build.mjs fraud_rules.js -o fraud_rules_js.wasm

import { AgentError, ValueState, stringsOf, take, withColumn } from '@sabot/agent';

function column(table, name, typeName) {
  const c = table.getChild(name);
  if (c === null || !String(c.type).startsWith(typeName)) {
    const have = table.schema.fields.map((f) => `${f.name}: ${f.type}`).join(', ');
    throw AgentError.invalidInput(
      `fraud-rules needs a column \`${name}\` of type ${typeName}; the batch has ${have}`,
    );
  }
  return c;
}

export default class FraudRules {
  constructor(config) {
    this.factor = config.over_limit_factor ?? 1.5;
    if (!(Number.isFinite(this.factor) && this.factor > 0)) {
      throw AgentError.invalidConfig(
        `over_limit_factor must be a positive number, got ${config.over_limit_factor}`,
      );
    }
    this.blacklist = new Set(config.blacklisted_merchants ?? []);
    this.highRisk = new Set(config.high_risk_countries ?? []);
    this.velocity = config.velocity ?? null;
    if (this.velocity && !(this.velocity.max_transactions >= 1 && this.velocity.within_ms > 0)) {
      throw AgentError.invalidConfig('velocity needs max_transactions ≥ 1 and within_ms > 0');
    }
    // The event times of each card's latest transactions, oldest first.
    this.recent = new ValueState('recent');
  }

  process(table) {
    const amount = column(table, 'amount', 'Float64').toArray();
    const limit = column(table, 'card_limit', 'Float64').toArray();
    // Whole columns at once: far cheaper than `get(i)` row by row.
    const merchant = stringsOf(column(table, 'merchant_id', 'Utf8'));
    const country = stringsOf(column(table, 'country', 'Utf8'));
    const n = table.numRows;

    // One state read and one write per batch, for all its cards.
    let keys = [];
    let times = null;
    let slots = null;
    let recent = null;
    if (this.velocity) {
      const cards = column(table, 'card_id', 'Int64').toArray(); // BigInt64Array
      // Card ids as numbers, from the two 32-bit halves: bigint work is slow in a component.
      const halves = new Int32Array(cards.buffer, cards.byteOffset, 2 * n);
      times = column(table, 'ts', 'Timestamp').toArray();
      const slotOf = new Map();
      slots = new Int32Array(n);
      for (let i = 0; i < n; i++) {
        const id = halves[2 * i + 1] * 4294967296 + (halves[2 * i] >>> 0);
        let slot = slotOf.get(id);
        if (slot === undefined) {
          slot = keys.length;
          slotOf.set(id, slot);
          keys.push(cards[i]);
        }
        slots[i] = slot;
      }
      recent = this.recent.getMany(keys).map((r) => r ?? []);
    }

    const rows = [];
    const reasons = [];
    for (let i = 0; i < n; i++) {
      let reason = null;
      if (amount[i] > limit[i] * this.factor) reason = 'over_limit';
      else if (this.blacklist.has(merchant[i])) reason = 'blacklisted_merchant';
      else if (this.highRisk.has(country[i])) reason = 'high_risk_country';
      if (this.velocity) {
        const ts = Number(times[i]);
        const { max_transactions: max, within_ms: within } = this.velocity;
        const seen = recent[slots[i]].filter((t) => t > ts - within);
        if (reason === null && seen.length >= max) reason = 'velocity';
        if (seen.length >= max) seen.shift();
        seen.push(ts);
        recent[slots[i]] = seen;
      }
      if (reason !== null) {
        rows.push(i);
        reasons.push(reason);
      }
    }
    if (this.velocity) this.recent.setMany(keys.map((k, s) => [k, recent[s]]));
    if (rows.length === 0) return undefined;
    return withColumn(take(table, rows), 'reason', reasons);
  }
}
