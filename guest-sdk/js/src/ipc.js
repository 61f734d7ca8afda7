// The `ipc` wire format of `wit/types.wit`, as apache-arrow reads and writes it.
//
// Each port and direction is one Arrow IPC stream: the host sends a port's schema message with its
// first batch only, then record batches alone. `PortDecoder` keeps the schema per port and puts it
// back in front of a batch that arrives without one, so `tableFromIPC` always sees a whole stream.
// `encodeBatches` writes one output per record batch: the schema travels with each (the host
// accepts a repeated schema), and the end-of-stream marker that apache-arrow appends is cut off.

import { tableFromIPC, tableToIPC, Table, RecordBatch } from 'apache-arrow';

const HEADER_SCHEMA = 1;
const CONTINUATION = 0xffffffff;

/**
 * The header type of the IPC message at the start of `bytes` (1 = schema, 2 = dictionary,
 * 3 = record batch), read from the message's flatbuffer without decoding it.
 * @param {Uint8Array} bytes
 * @returns {number}
 */
export function firstMessageType(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.byteLength < 8) {
    throw new Error(`an Arrow IPC message needs at least 8 bytes, got ${bytes.byteLength}`);
  }
  let meta = 4;
  if (view.getUint32(0, true) === CONTINUATION) meta = 8;
  // Message table: root offset, then the vtable it points to; field 1 is `header_type` (u8).
  const table = meta + view.getUint32(meta, true);
  const vtable = table - view.getInt32(table, true);
  const vtableSize = view.getUint16(vtable, true);
  if (vtableSize <= 6) return 0;
  const field = view.getUint16(vtable + 6, true);
  return field === 0 ? 0 : view.getUint8(table + field);
}

/** Decodes the batches arriving on one port. */
export class PortDecoder {
  /** @type {Uint8Array | null} */
  #schema = null;

  /**
   * @param {Uint8Array} bytes one `ipc` value: an optional schema message, then a record batch
   * @returns {Table}
   */
  decode(bytes) {
    if (firstMessageType(bytes) === HEADER_SCHEMA) {
      // Keep the schema message (its metadata and an empty body) for the batches that follow.
      const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      const prefix = view.getUint32(0, true) === CONTINUATION ? 8 : 4;
      const length = view.getUint32(prefix - 4, true);
      this.#schema = bytes.slice(0, prefix + length);
      return tableFromIPC(bytes);
    }
    if (this.#schema === null) {
      throw new Error('a batch arrived before its schema (expected the schema message first)');
    }
    const whole = new Uint8Array(this.#schema.byteLength + bytes.byteLength);
    whole.set(this.#schema, 0);
    whole.set(bytes, this.#schema.byteLength);
    return tableFromIPC(whole);
  }
}

/**
 * Encodes `data` (a Table or RecordBatch) for `port`: one output per record batch with rows
 * (with `keepEmpty`, batches without rows too: a function module's answer to the planner).
 * @param {Table | RecordBatch} data
 * @param {number} port
 * @param {boolean} [keepEmpty]
 * @returns {{port: number, batch: Uint8Array}[]}
 */
export function encodeOutputs(data, port, keepEmpty = false) {
  const batches = data instanceof Table ? data.batches : data instanceof RecordBatch ? [data] : null;
  if (batches === null) {
    throw new TypeError(
      `an agent emits apache-arrow Tables or RecordBatches; got ${describe(data)}`,
    );
  }
  const out = [];
  for (const batch of batches) {
    if (batch.numRows === 0 && !keepEmpty) continue;
    const bytes = tableToIPC(new Table(batch), 'stream');
    // Drop the 8-byte end-of-stream marker: the stream goes on with the port's next batch.
    out.push({ port, batch: bytes.subarray(0, bytes.byteLength - 8) });
  }
  return out;
}

function describe(value) {
  if (value === null) return 'null';
  if (typeof value !== 'object') return typeof value;
  return value.constructor?.name ?? 'an object';
}
