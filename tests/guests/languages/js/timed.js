// Timers, log and metrics from JavaScript: a timer per card at the end of each 10 s event-time
// window it had a transaction in; when one fires, a row (card, fired_at).
import { tableFromArrays } from 'apache-arrow';
import { keysOf, log, metrics, timers } from '@sabot/agent';

const WINDOW = 10_000;

export default class Timed {
  constructor() {
    log.info('timed agent starting');
  }

  process(table) {
    const keys = keysOf(table.getChild('card_id'));
    const ts = table.getChild('ts').toArray();
    const pairs = keys.map((k, i) => [k, (Math.floor(Number(ts[i]) / WINDOW) + 1) * WINDOW]);
    timers.registerEventTime(pairs);
    metrics.counterAdd('rows', keys.length);
    return undefined;
  }

  onTimers(due) {
    if (timers.watermark() === undefined) throw new Error('a timer fired before any watermark');
    const card = due.map((t) => new DataView(t.key.buffer, t.key.byteOffset, 8).getBigInt64(0, true));
    return tableFromArrays({
      card: BigInt64Array.from(card),
      fired_at: BigInt64Array.from(due.map((t) => BigInt(t.ts))),
    });
  }
}
