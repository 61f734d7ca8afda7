// Types of @sabot/agent, for agents written in TypeScript (sabot-agent-build takes .ts too).
import type { Table, RecordBatch, Vector } from 'apache-arrow';

/** What an agent emits: nothing, a table or batch (port 0), or several, some on other ports. */
export type Emit =
  | undefined
  | null
  | Table
  | RecordBatch
  | Array<Table | RecordBatch | { port: number; table?: Table; batch?: Table | RecordBatch }>;

/** A due timer, as `onTimers` receives it. */
export interface Timer {
  domain: 'event-time' | 'processing-time';
  key: Uint8Array;
  ts: number;
}

/** An agent class: constructed once per instance with its `config` table. */
export interface AgentClass {
  new (config: any): {
    process(table: Table, port: number): Emit;
    onWatermark?(watermark: number): Emit;
    onTimers?(timers: Timer[]): Emit;
  };
}

export type Key = Uint8Array | bigint | string;

export class AgentError extends Error {
  kind: 'invalid-input' | 'invalid-config' | 'internal';
  row?: number;
  constructor(kind: AgentError['kind'], message: string, row?: number);
  static invalidInput(message: string, row?: number): AgentError;
  static invalidConfig(message: string): AgentError;
  static internal(message: string): AgentError;
}

export interface Codec {
  encode(value: any): Uint8Array;
  decode(bytes: Uint8Array): any;
}
export const json: Codec;
export const bytes: Codec;

export class ValueState<T = any> {
  constructor(name: string, codec?: Codec);
  getMany(keys: Key[]): (T | undefined)[];
  setMany(entries: [Key, T][]): void;
  deleteMany(keys: Key[]): void;
  get(key: Key): T | undefined;
  set(key: Key, value: T): void;
  delete(key: Key): void;
}

export class MapState<V = any> {
  constructor(name: string, codec?: Codec);
  getMany(pairs: [Key, string][]): (V | undefined)[];
  putMany(triples: [Key, string, V][]): void;
  removeMany(pairs: [Key, string][]): void;
  entries(key: Key): [string, V][];
}

export const timers: {
  registerEventTime(pairs: [Key, number][]): void;
  registerProcessingTime(pairs: [Key, number][]): void;
  delete(timers: Timer[]): void;
  watermark(): number | undefined;
};

export const log: Record<'trace' | 'debug' | 'info' | 'warn' | 'error', (message: string) => void>;
export const metrics: {
  counterAdd(name: string, delta?: number): void;
  gaugeSet(name: string, value: number): void;
  histogramRecord(name: string, value: number): void;
};

export function take(table: Table, indices: ArrayLike<number>): Table;
export function withColumn(table: Table, name: string, values: Vector | string[]): Table;
export function keysOf(column: Vector): Uint8Array[];
/** A UTF-8 column's values, decoded at once (fast) rather than row by row with `get(i)`. */
export function stringsOf(column: Vector): (string | null)[];
export function stateKey(value: Key): Uint8Array;

/** A scalar function SQL calls (`CREATE FUNCTION`): its types and its value for one row. */
export interface ScalarFunction {
  /** Argument types; an aggregate's argument is a list (`List<Float64>`). */
  args: string[];
  returns: 'Float64' | 'Int64' | 'Int32' | 'Utf8' | 'Bool';
  call(...args: any[]): any;
}

/** The agent of a module of scalar functions, to export as its default. */
export function functions(definitions: Record<string, ScalarFunction>): AgentClass;

/** An aggregate SQL's CREATE AGGREGATE calls: folds each group's list of values. */
export function aggregate<Acc>(definition: {
  input: 'Float64' | 'Int64' | 'Int32' | 'Utf8' | 'Bool';
  returns: 'Float64' | 'Int64' | 'Int32' | 'Utf8' | 'Bool';
  create(): Acc;
  add(acc: Acc, value: any): Acc | void;
  result(acc: Acc): any;
}): ScalarFunction;
