// Scalar functions that SQL calls: `CREATE FUNCTION risk AS 'fx@1.0.0'` makes `risk(amount,
// country)` usable in a SQL pipeline. Each call site runs as an agent of the module, configured
// with `{"function": NAME, "args": [COLUMN, …], "output": COLUMN}`; it returns every row it got
// with the result appended as `output`, one crossing per batch. The SQL planner learns the result
// type by sending a batch with no rows, and a call whose argument types differ is refused then,
// with the signature in the message.

import { Bool, Float64, Int32, Int64, Type, Utf8, makeVector, vectorFromArray } from 'apache-arrow';

import { AgentError } from './error.js';
import { stringsOf, withColumn } from './table.js';

/** The argument and result types a function may declare, by their Arrow names. */
const TYPES = {
  Float64: () => new Float64(),
  Int64: () => new Int64(),
  Int32: () => new Int32(),
  Utf8: () => new Utf8(),
  Bool: () => new Bool(),
};

function checkType(name, where, type, lists = false) {
  const element = lists && /^List<(.*)>$/.exec(type)?.[1];
  if (!(type in TYPES) && !(element && element in TYPES)) {
    throw AgentError.invalidConfig(
      `function \`${name}\`: ${where} ${JSON.stringify(type)} is not a supported type (${Object.keys(TYPES).join(', ')})`,
    );
  }
}

/** The values of `column` as JavaScript values (`null` for NULL; a list as an array). */
function valuesOf(column) {
  if (column.type.typeId === Type.List) {
    const out = new Array(column.length);
    for (let i = 0; i < out.length; i++) {
      const list = column.get(i);
      out[i] = list === null ? null : Array.from(list);
    }
    return out;
  }
  if (column.type.typeId === Type.Utf8) return stringsOf(column);
  // Numbers without nulls: the column's own typed array, indexed like an array, no copy.
  // (Int64 as a BigInt64Array: bigints, as `get` gives them.)
  if (column.nullCount === 0 && (column.type.typeId === Type.Float || column.type.typeId === Type.Int)) {
    return column.toArray();
  }
  const out = new Array(column.length);
  for (let i = 0; i < out.length; i++) out[i] = column.get(i);
  return out;
}

/** A column of `type` (a name of TYPES) from `values`; numbers go straight into a typed array. */
function columnOf(type, values) {
  const plain = { Float64: Float64Array, Int32: Int32Array }[type];
  if (plain !== undefined && !values.includes(null)) {
    return makeVector(plain.from(values));
  }
  return vectorFromArray(values, TYPES[type]());
}

function describe(name, definition) {
  return `${name}(${definition.args.join(', ')}) -> ${definition.returns}`;
}

/**
 * The agent for a module of scalar functions, as its default export:
 *
 * ```js
 * export default functions({
 *   risk: { args: ['Float64', 'Utf8'], returns: 'Float64',
 *           call: (amount, country) => amount === null ? null : amount / 1000 },
 * });
 * ```
 *
 * `call` gets one row's arguments (`null` for NULL; Int64 as bigint) and returns the value or
 * `null`. Types: Float64, Int64, Int32, Utf8, Bool.
 */
export function functions(definitions) {
  for (const [name, d] of Object.entries(definitions)) {
    if (!Array.isArray(d?.args) || typeof d.call !== 'function') {
      throw new TypeError(
        `function \`${name}\`: expected { args: [TYPE, …], returns: TYPE, call(...args) }`,
      );
    }
  }
  const names = Object.keys(definitions).join(', ');
  return class Functions {
    constructor(config) {
      const { function: name, args, output } = config ?? {};
      if (typeof name !== 'string' || !Array.isArray(args) || typeof output !== 'string') {
        throw AgentError.invalidConfig(
          `a function module is configured with {"function": NAME, "args": [COLUMN, …], "output": COLUMN}, got ${JSON.stringify(config)} (functions: ${names})`,
        );
      }
      const found = Object.keys(definitions).find((n) => n.toLowerCase() === name.toLowerCase());
      if (found === undefined) {
        throw AgentError.invalidConfig(`this module has no function \`${name}\` (functions: ${names})`);
      }
      const definition = definitions[found];
      definition.args.forEach((t, i) => checkType(found, `argument ${i + 1}`, t, true));
      checkType(found, 'the result', definition.returns);
      if (definition.args.length !== args.length) {
        throw AgentError.invalidConfig(
          `${found} takes ${definition.args.length} argument(s), ${describe(found, definition)}; the call gives ${args.length}`,
        );
      }
      this.name = found;
      this.definition = definition;
      this.args = args;
      this.output = output;
    }

    process(table) {
      const { name, definition } = this;
      const columns = this.args.map((column, i) => {
        const vector = table.getChild(column);
        if (vector === null) {
          throw AgentError.invalidInput(`${name}: no column \`${column}\` for argument ${i + 1} in the batch`);
        }
        const got = String(vector.type);
        if (got !== definition.args[i]) {
          throw AgentError.invalidInput(
            `${describe(name, definition)}: argument ${i + 1} (\`${column}\`) is ${got}, expected ${definition.args[i]} (CAST it)`,
          );
        }
        return valuesOf(vector);
      });
      const rows = table.numRows;
      const results = new Array(rows);
      const call = definition.call.bind(definition);
      const [a, b, c] = columns;
      if (columns.length === 1) {
        for (let r = 0; r < rows; r++) results[r] = call(a[r]) ?? null;
      } else if (columns.length === 2) {
        for (let r = 0; r < rows; r++) results[r] = call(a[r], b[r]) ?? null;
      } else if (columns.length === 3) {
        for (let r = 0; r < rows; r++) results[r] = call(a[r], b[r], c[r]) ?? null;
      } else {
        const row = new Array(columns.length);
        for (let r = 0; r < rows; r++) {
          for (let i = 0; i < columns.length; i++) row[i] = columns[i][r];
          results[r] = call(...row) ?? null;
        }
      }
      const vector = columnOf(definition.returns, results);
      const kept = table.schema.fields.some((f) => f.name === this.output)
        ? table.select(table.schema.fields.map((f) => f.name).filter((n) => n !== this.output))
        : table;
      // A batch without rows is answered too: the planner reads the result's type from it.
      return { port: 0, table: withColumn(kept, this.output, vector), keepEmpty: true };
    }
  };
}

/**
 * An aggregate SQL's `CREATE AGGREGATE` calls, as a function of `functions({...})`: the planner
 * collects each group's values (of each window) into a list, and this folds each list —
 * `create()`, `add(acc, value)` for every non-null value in arrival order, `result(acc)`:
 *
 * ```js
 * export default functions({
 *   spread: aggregate({ input: 'Float64', returns: 'Float64',
 *     create: () => ({ lo: Infinity, hi: -Infinity }),
 *     add: (acc, v) => { acc.lo = Math.min(acc.lo, v); acc.hi = Math.max(acc.hi, v); return acc; },
 *     result: (acc) => acc.hi - acc.lo }),
 * });
 * ```
 *
 * `add` returns the new accumulator (or nothing, to keep the one it changed).
 */
export function aggregate({ input, returns, create, add, result }) {
  if (typeof create !== 'function' || typeof add !== 'function' || typeof result !== 'function') {
    throw new TypeError('an aggregate is { input: TYPE, returns: TYPE, create(), add(acc, value), result(acc) }');
  }
  return {
    args: [`List<${input}>`],
    returns,
    call(values) {
      if (values === null) return null;
      let acc = create();
      for (const v of values) {
        if (v === null || v === undefined) continue;
        const next = add(acc, typeof v === 'bigint' && input !== 'Int64' ? Number(v) : v);
        if (next !== undefined) acc = next;
      }
      return result(acc);
    },
  };
}
