// What the host offers an agent: logging, metrics, keyed state and timers, over the imports of
// `wit/worlds.wit`. Every call crosses the sandbox boundary: call these per batch, not per row.

import { log as hostLog } from 'sabot:agent/log@0.1.1';
import { counterAdd, gaugeSet, histogramRecord } from 'sabot:agent/metrics@0.1.1';
import { getMany, putMany, deleteMany } from 'sabot:agent/packed-state@0.1.1';
import { scan } from 'sabot:agent/state@0.1.1';
import { register, delete as deleteTimers, watermark as hostWatermark } from 'sabot:agent/timers@0.1.1';
import { AgentError } from './error.js';
import { stateKey } from './table.js';
import { pack, unpackValues } from './packed.js';

/** Structured log lines, tagged by the host with the pipeline, agent and instance. */
export const log = {
  trace: (message) => hostLog('trace', String(message)),
  debug: (message) => hostLog('debug', String(message)),
  info: (message) => hostLog('info', String(message)),
  warn: (message) => hostLog('warn', String(message)),
  error: (message) => hostLog('error', String(message)),
};

/** Agent-defined metrics, exported by the host beside its own. */
export const metrics = {
  /** Adds `delta` (a non-negative integer) to the counter `name`. */
  counterAdd: (name, delta = 1) => counterAdd(name, BigInt(delta)),
  gaugeSet: (name, value) => gaugeSet(name, Number(value)),
  histogramRecord: (name, value) => histogramRecord(name, Number(value)),
};

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const EMPTY = new Uint8Array(0);

/** Values as JSON text: anything `JSON.stringify` keeps (no bigints). */
export const json = {
  encode: (value) => encoder.encode(JSON.stringify(value)),
  decode: (bytes) => JSON.parse(decoder.decode(bytes)),
};

/** Values that are already bytes. */
export const bytes = {
  encode: (value) => value,
  decode: (value) => value,
};

function stateCall(store, call) {
  try {
    return call();
  } catch (e) {
    const p = e?.payload;
    if (p && typeof p.tag === 'string') {
      throw AgentError.internal(`state \`${store}\`: ${p.tag}: ${p.val}`);
    }
    throw e;
  }
}

/**
 * One value per key, kept by the host (RocksDB by default) and checkpointed with the pipeline.
 * Keys are the agent's key column values: Uint8Arrays from `keysOf(column)`, or bigints
 * (Int64) and strings.
 */
export class ValueState {
  /**
   * @param {string} name the store's name
   * @param {{encode: (v: any) => Uint8Array, decode: (b: Uint8Array) => any}} codec
   */
  constructor(name, codec = json) {
    this.name = name;
    this.codec = codec;
  }

  /** The values of `keys`, in order (`undefined` where there is none): one host call. */
  getMany(keys) {
    if (keys.length === 0) return [];
    const packed = pack(keys.flatMap((k) => [stateKey(k), EMPTY]));
    return unpackValues(stateCall(this.name, () => getMany(this.name, packed)), this.codec);
  }

  /** Writes `entries`, `[key, value]` pairs: one host call. */
  setMany(entries) {
    if (entries.length === 0) return;
    const packed = pack(entries.flatMap(([k, v]) => [stateKey(k), EMPTY, this.codec.encode(v)]));
    stateCall(this.name, () => putMany(this.name, packed));
  }

  /** Deletes the values of `keys`: one host call. */
  deleteMany(keys) {
    if (keys.length === 0) return;
    const packed = pack(keys.flatMap((k) => [stateKey(k), EMPTY]));
    stateCall(this.name, () => deleteMany(this.name, packed));
  }

  get(key) {
    return this.getMany([key])[0];
  }

  set(key, value) {
    this.setMany([[key, value]]);
  }

  delete(key) {
    this.deleteMany([key]);
  }
}

/** Many fields per key (string fields), read one at a time or all in field order. */
export class MapState {
  constructor(name, codec = json) {
    this.name = name;
    this.codec = codec;
  }

  /** The values of `[key, field]` pairs, in order (`undefined` where there is none). */
  getMany(pairs) {
    if (pairs.length === 0) return [];
    const packed = pack(pairs.flatMap(([k, f]) => [stateKey(k), encoder.encode(f)]));
    return unpackValues(stateCall(this.name, () => getMany(this.name, packed)), this.codec);
  }

  /** Writes `[key, field, value]` triples. */
  putMany(triples) {
    if (triples.length === 0) return;
    const packed = pack(
      triples.flatMap(([k, f, v]) => [stateKey(k), encoder.encode(f), this.codec.encode(v)]),
    );
    stateCall(this.name, () => putMany(this.name, packed));
  }

  /** Deletes `[key, field]` pairs. */
  removeMany(pairs) {
    if (pairs.length === 0) return;
    const packed = pack(pairs.flatMap(([k, f]) => [stateKey(k), encoder.encode(f)]));
    stateCall(this.name, () => deleteMany(this.name, packed));
  }

  /** Every `[field, value]` of `key`, in field order. */
  entries(key) {
    const k = stateKey(key);
    const out = [];
    let after;
    for (;;) {
      const page = stateCall(this.name, () => scan(this.name, k, EMPTY, after, 1024));
      for (const [sub, value] of page) out.push([decoder.decode(sub), this.codec.decode(value)]);
      if (page.length < 1024) return out;
      after = page[page.length - 1][0];
    }
  }
}

/** Timers kept by the host per key; they fire through the agent's `onTimers`. */
export const timers = {
  /** Registers event-time timers: `[key, ms]` pairs. */
  registerEventTime(pairs) {
    register(pairs.map(([k, ts]) => ({ domain: 'event-time', key: stateKey(k), ts: BigInt(ts) })));
  },
  /** Registers processing-time timers: `[key, ms since the epoch]` pairs. */
  registerProcessingTime(pairs) {
    register(pairs.map(([k, ts]) => ({ domain: 'processing-time', key: stateKey(k), ts: BigInt(ts) })));
  },
  /** Deletes timers, `{domain, key, ts}` objects as `onTimers` receives them. */
  delete(list) {
    deleteTimers(list.map((t) => ({ domain: t.domain, key: stateKey(t.key), ts: BigInt(t.ts) })));
  },
  /** The instance's watermark in ms, or `undefined` before the inputs have one. */
  watermark() {
    const w = hostWatermark();
    return w === undefined || w === null ? undefined : Number(w);
  },
};
