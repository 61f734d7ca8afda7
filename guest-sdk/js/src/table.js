// Columnar helpers apache-arrow lacks: keep some rows of a table, add a column, and the state key
// of every row. They copy buffers directly (no per-value decoding) for the common types.

import {
  Table,
  RecordBatch,
  Schema,
  Field,
  Struct,
  Type,
  makeData,
  vectorFromArray,
  Utf8,
} from 'apache-arrow';

/**
 * The rows of `table` at `indices`, in that order, as a new single-batch Table.
 * @param {Table} table
 * @param {ArrayLike<number>} indices
 * @returns {Table}
 */
export function take(table, indices) {
  const rows = Uint32Array.from(indices);
  const columns = table.schema.fields.map((field) => takeData(table.getChild(field.name), rows));
  return tableOf(table.schema.fields, columns, rows.length);
}

/**
 * `table` with one more column `name`, of `values` (an apache-arrow Vector or a plain array of
 * strings, which becomes a UTF-8 column).
 * @param {Table} table
 * @param {string} name
 * @param {import('apache-arrow').Vector | string[]} values
 * @returns {Table}
 */
export function withColumn(table, name, values) {
  const vector = Array.isArray(values) ? vectorFromArray(values, new Utf8()) : values;
  if (vector.length !== table.numRows) {
    throw new RangeError(
      `column \`${name}\` has ${vector.length} values; the table has ${table.numRows} rows`,
    );
  }
  const whole = table.batches.length === 1 ? table : new Table(table.schema, table.batches);
  const fields = [...whole.schema.fields, new Field(name, vector.type, vector.nullCount > 0)];
  const columns = whole.schema.fields.map((f) => single(whole.getChild(f.name)));
  columns.push(single(vector));
  return tableOf(fields, columns, table.numRows);
}

function tableOf(fields, columns, length) {
  const schema = new Schema(fields);
  const data = makeData({
    type: new Struct(fields),
    length,
    nullCount: 0,
    children: columns,
  });
  return new Table(new RecordBatch(schema, data));
}

/** One Data of the whole vector (concatenating its chunks when there are several). */
function single(vector) {
  if (vector.data.length === 1) return vector.data[0];
  const rows = new Uint32Array(vector.length);
  for (let i = 0; i < rows.length; i++) rows[i] = i;
  return takeData(vector, rows);
}

const BITS = [1, 2, 4, 8, 16, 32, 64, 128];

function takeData(vector, rows) {
  const chunks = vector.data;
  const type = vector.type;
  const direct =
    chunks.length === 1 &&
    chunks[0].offset === 0 &&
    (isFixedWidth(type.typeId) || type.typeId === Type.Utf8 || type.typeId === Type.Binary);
  if (!direct) {
    // Any other type or layout: through the values (slower, but exact).
    const values = new Array(rows.length);
    for (let i = 0; i < rows.length; i++) values[i] = vector.get(rows[i]);
    return vectorFromArray(values, type).data[0];
  }
  const data = chunks[0];
  const n = rows.length;
  let nullBitmap;
  let nullCount = 0;
  if (data.nullCount > 0) {
    nullBitmap = new Uint8Array((n + 7) >> 3);
    for (let i = 0; i < n; i++) {
      if (data.getValid(rows[i])) nullBitmap[i >> 3] |= BITS[i & 7];
      else nullCount++;
    }
  }
  if (type.typeId === Type.Utf8 || type.typeId === Type.Binary) {
    const offsets = data.valueOffsets;
    let bytes = 0;
    for (let i = 0; i < n; i++) bytes += offsets[rows[i] + 1] - offsets[rows[i]];
    const outOffsets = new Int32Array(n + 1);
    const outValues = new Uint8Array(bytes);
    let at = 0;
    for (let i = 0; i < n; i++) {
      const start = offsets[rows[i]];
      const end = offsets[rows[i] + 1];
      outValues.set(data.values.subarray(start, end), at);
      at += end - start;
      outOffsets[i + 1] = at;
    }
    return makeData({ type, length: n, nullCount, nullBitmap, valueOffsets: outOffsets, data: outValues });
  }
  if (type.typeId === Type.Bool) {
    const out = new Uint8Array((n + 7) >> 3);
    for (let i = 0; i < n; i++) {
      const r = rows[i];
      if (data.values[r >> 3] & BITS[r & 7]) out[i >> 3] |= BITS[i & 7];
    }
    return makeData({ type, length: n, nullCount, nullBitmap, data: out });
  }
  const stride = data.stride;
  const values = data.values;
  const out = new values.constructor(n * stride);
  if (stride === 1) {
    for (let i = 0; i < n; i++) out[i] = values[rows[i]];
  } else {
    for (let i = 0; i < n; i++) {
      for (let s = 0; s < stride; s++) out[i * stride + s] = values[rows[i] * stride + s];
    }
  }
  return makeData({ type, length: n, nullCount, nullBitmap, data: out });
}

function isFixedWidth(typeId) {
  switch (typeId) {
    case Type.Int:
    case Type.Float:
    case Type.Bool:
    case Type.Date:
    case Type.Time:
    case Type.Timestamp:
    case Type.Duration:
    case Type.Decimal:
    case Type.FixedSizeBinary:
      return true;
    default:
      return false;
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * The values of a UTF-8 column as JavaScript strings (`null` for null), decoded with one call for
 * the whole column when its bytes are ASCII, instead of one per row: `vector.get(i)` decodes each
 * value on its own, which in a component costs more than the rest of a typical agent.
 * @param {import('apache-arrow').Vector} column
 * @returns {(string | null)[]}
 */
export function stringsOf(column) {
  if (column.type.typeId !== Type.Utf8) {
    const out = new Array(column.length);
    for (let i = 0; i < out.length; i++) out[i] = column.get(i);
    return out;
  }
  const out = new Array(column.length);
  let at = 0;
  for (const data of column.data) {
    const offsets = data.valueOffsets;
    const bytes = data.values.subarray(offsets[0], offsets[data.length]);
    const text = decoder.decode(bytes);
    const base = offsets[0];
    if (text.length === bytes.byteLength && data.nullCount === 0) {
      // ASCII without nulls, the common case: byte offsets are string offsets.
      for (let r = 0; r < data.length; r++, at++) {
        out[at] = text.substring(offsets[r] - base, offsets[r + 1] - base);
      }
    } else if (text.length === bytes.byteLength) {
      for (let r = 0; r < data.length; r++, at++) {
        out[at] = data.getValid(r) ? text.substring(offsets[r] - base, offsets[r + 1] - base) : null;
      }
    } else {
      for (let r = 0; r < data.length; r++, at++) {
        out[at] = data.getValid(r)
          ? decoder.decode(data.values.subarray(offsets[r], offsets[r + 1]))
          : null;
      }
    }
  }
  return out;
}

/**
 * The state key of every row of `column`, encoded as the host encodes the agent's key column:
 * integers as little-endian bytes of their own width, strings as UTF-8, binary as is.
 * @param {import('apache-arrow').Vector} column
 * @returns {Uint8Array[]}
 */
export function keysOf(column) {
  const type = column.type;
  const keys = new Array(column.length);
  if (type.typeId === Type.Int) {
    const width = type.bitWidth / 8;
    let i = 0;
    for (const data of column.data) {
      const bytes = new Uint8Array(data.values.buffer, data.values.byteOffset, data.values.byteLength);
      for (let r = 0; r < data.length; r++, i++) {
        const at = r * width; // a sliced Data's values already start at its offset
        keys[i] = bytes.slice(at, at + width);
      }
    }
    return keys;
  }
  const text =
    type.typeId === Type.Utf8 ||
    (type.typeId === Type.Dictionary && type.dictionary.typeId === Type.Utf8);
  if (text) {
    const values = stringsOf(column);
    for (let i = 0; i < keys.length; i++) keys[i] = encoder.encode(values[i]);
    return keys;
  }
  if (type.typeId === Type.Binary) {
    for (let i = 0; i < keys.length; i++) keys[i] = column.get(i);
    return keys;
  }
  throw new TypeError(
    `a state key column must be an integer, UTF-8 or binary column; this one is ${type}`,
  );
}

/**
 * The state key of one value: a bigint as 8 little-endian bytes (an Int64 key), a string as
 * UTF-8, a Uint8Array as is. Use `keysOf` for other integer widths.
 * @param {bigint | string | Uint8Array} value
 * @returns {Uint8Array}
 */
export function stateKey(value) {
  if (value instanceof Uint8Array) return value;
  if (typeof value === 'string') return encoder.encode(value);
  if (typeof value === 'bigint') {
    const out = new Uint8Array(8);
    new DataView(out.buffer).setBigInt64(0, value, true);
    return out;
  }
  throw new TypeError(
    `a state key is a bigint (Int64), a string or a Uint8Array; got ${typeof value} ${String(value)}`,
  );
}
