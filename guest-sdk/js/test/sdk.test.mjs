// The SDK's framing and table helpers, in Node against apache-arrow itself.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  tableFromArrays,
  tableFromIPC,
  tableToIPC,
  vectorFromArray,
  Int32,
  Utf8,
  Bool,
  Float64,
} from 'apache-arrow';
import { PortDecoder, encodeOutputs, firstMessageType } from '../src/ipc.js';
import { take, withColumn, keysOf, stateKey, stringsOf } from '../src/table.js';

const sample = () =>
  tableFromArrays({
    id: BigInt64Array.from([1n, 2n, 3n, -4n]),
    amount: Float64Array.from([1.5, 2.5, 3.5, 4.5]),
    name: vectorFromArray(['a', 'béé', '', 'dddd'], new Utf8()),
  });

test('a batch without its schema is decoded with the schema the port saw first', () => {
  const table = sample();
  const [first] = encodeOutputs(table, 0);
  assert.equal(firstMessageType(first.batch), 1, 'the first message is the schema');
  const decoder = new PortDecoder();
  assert.deepEqual(decoder.decode(first.batch).toArray().map((r) => r.name), ['a', 'béé', '', 'dddd']);
  // What the host sends next on the port: the record batch message alone.
  const whole = tableToIPC(table, 'stream');
  const schemaLength = 8 + new DataView(whole.buffer, whole.byteOffset).getUint32(4, true);
  const batchOnly = whole.subarray(schemaLength, whole.byteLength - 8);
  assert.equal(firstMessageType(batchOnly), 3);
  const again = decoder.decode(batchOnly);
  assert.equal(again.numRows, 4);
  assert.deepEqual([...again.getChild('amount').toArray()], [1.5, 2.5, 3.5, 4.5]);
});

test('a batch before any schema is refused', () => {
  const whole = tableToIPC(sample(), 'stream');
  const schemaLength = 8 + new DataView(whole.buffer, whole.byteOffset).getUint32(4, true);
  assert.throws(() => new PortDecoder().decode(whole.subarray(schemaLength)), /before its schema/);
});

test('outputs carry one record batch each, without the end-of-stream marker', () => {
  const outs = encodeOutputs(sample(), 2);
  assert.equal(outs.length, 1);
  assert.equal(outs[0].port, 2);
  const bytes = outs[0].batch;
  const tail = new DataView(bytes.buffer, bytes.byteOffset + bytes.byteLength - 8);
  assert.notDeepEqual([tail.getUint32(0, true), tail.getUint32(4, true)], [0xffffffff, 0]);
  assert.equal(tableFromIPC(bytes).numRows, 4);
});

test('emitting something that is not a table names what it got', () => {
  assert.throws(() => encodeOutputs({ rows: [] }, 0), /Tables or RecordBatches; got Object/);
});

test('take keeps the chosen rows of every column, nulls included', () => {
  const table = tableFromArrays({
    n: vectorFromArray([1, null, 3, 4], new Int32()),
    s: vectorFromArray(['x', 'yy', null, 'zzz'], new Utf8()),
    b: vectorFromArray([true, false, null, true], new Bool()),
    f: Float64Array.from([0.5, 1.5, 2.5, 3.5]),
  });
  const got = take(table, [3, 1, 2, 3]);
  assert.deepEqual(got.toArray().map((r) => ({ ...r })), [
    { n: 4, s: 'zzz', b: true, f: 3.5 },
    { n: null, s: 'yy', b: false, f: 1.5 },
    { n: 3, s: null, b: null, f: 2.5 },
    { n: 4, s: 'zzz', b: true, f: 3.5 },
  ]);
  const back = tableFromIPC(encodeOutputs(got, 0)[0].batch);
  assert.deepEqual(back.toArray().map((r) => r.s), ['zzz', 'yy', null, 'zzz']);
});

test('withColumn appends a column and refuses one of another length', () => {
  const table = sample();
  const got = withColumn(table, 'reason', ['a', 'b', 'c', 'd']);
  assert.deepEqual(got.schema.fields.map((f) => f.name), ['id', 'amount', 'name', 'reason']);
  assert.equal(got.getChild('reason').get(2), 'c');
  assert.throws(() => withColumn(table, 'short', ['a']), /column `short` has 1 values; the table has 4 rows/);
});

test('keys are encoded as the host encodes the key column', () => {
  const keys = keysOf(sample().getChild('id'));
  assert.deepEqual([...keys[0]], [1, 0, 0, 0, 0, 0, 0, 0]);
  assert.deepEqual([...keys[3]], [252, 255, 255, 255, 255, 255, 255, 255]);
  assert.deepEqual([...stateKey(-4n)], [...keys[3]]);
  assert.deepEqual([...keysOf(vectorFromArray([7], new Int32()))[0]], [7, 0, 0, 0]);
  assert.deepEqual([...keysOf(sample().getChild('name'))[1]], [...new TextEncoder().encode('béé')]);
  const dictionary = tableFromArrays({ c: ['FR', 'JP', 'FR'] }).getChild('c');
  assert.deepEqual([...keysOf(dictionary)[2]], [...new TextEncoder().encode('FR')]);
  assert.throws(() => stateKey(3), /a state key is a bigint/);
  assert.throws(() => keysOf(sample().getChild('amount')), /integer, UTF-8 or binary column/);
});

test('stringsOf gives every value of a UTF-8 column, ASCII or not, nulls as null', () => {
  const ascii = vectorFromArray(['ab', null, '', 'xyz'], new Utf8());
  assert.deepEqual(stringsOf(ascii), ['ab', null, '', 'xyz']);
  const wide = vectorFromArray(['é', 'a😀b', null, 'ü'], new Utf8());
  assert.deepEqual(stringsOf(wide), ['é', 'a😀b', null, 'ü']);
  const sliced = take(tableFromArrays({ s: vectorFromArray(['q', 'rr', 'sss'], new Utf8()) }), [2, 0]);
  assert.deepEqual(stringsOf(sliced.getChild('s')), ['sss', 'q']);
});

test('a function module appends its result, answers an empty batch, and names what it takes', async () => {
  const { functions, aggregate } = await import('../src/function.js');
  const Module = functions({
    double: { args: ['Float64'], returns: 'Float64', call: (x) => (x === null ? null : 2 * x) },
    spread: aggregate({
      input: 'Float64',
      returns: 'Float64',
      create: () => ({ lo: Infinity, hi: -Infinity }),
      add: (acc, v) => ({ lo: Math.min(acc.lo, v), hi: Math.max(acc.hi, v) }),
      result: (acc) => acc.hi - acc.lo,
    }),
  });
  const double = new Module({ function: 'DOUBLE', args: ['amount'], output: 'd' });
  const out = double.process(sample());
  assert.equal(out.keepEmpty, true);
  assert.deepEqual([...out.table.getChild('d').toArray()], [3, 5, 7, 9]);
  assert.deepEqual(out.table.schema.fields.map((f) => f.name), ['id', 'amount', 'name', 'd']);
  const empty = double.process(sample().slice(0, 0));
  assert.equal(empty.table.numRows, 0);
  assert.equal(encodeOutputs(empty.table, 0, true).length, 1, 'the empty answer is sent');
  assert.equal(String(empty.table.schema.fields[3].type), 'Float64');
  const wrong = new Module({ function: 'double', args: ['name'], output: 'd' });
  assert.throws(
    () => wrong.process(sample()),
    /double\(Float64\) -> Float64: argument 1 \(`name`\) is Utf8, expected Float64/,
  );
  assert.throws(() => new Module({ function: 'nope', args: [], output: 'x' }), /no function `nope` \(functions: double, spread\)/);
  assert.throws(() => new Module({ function: 'double', args: [], output: 'x' }), /double takes 1 argument/);
  // An aggregate folds each list.
  const { List, Field } = await import('apache-arrow');
  const listType = new List(new Field('item', new Float64(), true));
  const lists = tableFromArrays({ v: vectorFromArray([[1, 5, 2], [], null], listType) });
  const spread = new Module({ function: 'spread', args: ['v'], output: 's' });
  assert.equal(String(lists.getChild('v').type), 'List<Float64>');
  const spreads = spread.process(lists).table.getChild('s');
  assert.equal(spreads.get(0), 4);
  assert.equal(spreads.get(1), -Infinity, 'an empty list: result of the fresh accumulator');
  assert.equal(spreads.get(2), null, 'a NULL list: NULL');
});

test('state calls pack every key, sub-key and value of a batch into one buffer and one offsets array', async () => {
  const { pack, unpackValues } = await import('../src/packed.js');
  const enc = new TextEncoder();
  const packed = pack([stateKey(7n), new Uint8Array(0), enc.encode('12'), stateKey('card-8'), enc.encode('shop'), enc.encode('"x"')]);
  assert.ok(packed.bytes instanceof Uint8Array && packed.ends instanceof Uint32Array);
  assert.deepEqual([...packed.ends], [8, 8, 10, 16, 20, 23]);
  assert.equal(new TextDecoder().decode(packed.bytes.subarray(16, 20)), 'shop');
  // What the host answers: the values found end to end, and which entries were there.
  const json = { decode: (b) => JSON.parse(new TextDecoder().decode(b)) };
  const found = { values: { bytes: enc.encode('12"x"'), ends: new Uint32Array([2, 2, 5]) }, found: [true, false, true] };
  assert.deepEqual(unpackValues(found, json), [12, undefined, 'x']);
  assert.deepEqual(unpackValues({ values: { bytes: new Uint8Array(0), ends: new Uint32Array(0) }, found: [] }, json), []);
});
