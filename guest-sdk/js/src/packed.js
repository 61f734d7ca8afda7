// The lists of one `packed-state@0.1.1` call (wit/packed-state.wit): every key, sub-key and value
// of a batch laid end to end in one buffer, with where each ends.

/**
 * packed-state's `packed` record of `strings` (Uint8Arrays): the bytes end to end, and where each
 * string ends. One buffer and one offsets array per call, whatever the number of entries.
 */
export function pack(strings) {
  let total = 0;
  for (const s of strings) total += s.length;
  const bytes = new Uint8Array(total);
  const ends = new Uint32Array(strings.length);
  let at = 0;
  for (let i = 0; i < strings.length; i++) {
    bytes.set(strings[i], at);
    at += strings[i].length;
    ends[i] = at;
  }
  return { bytes, ends };
}

/** The values `getMany` found, decoded by `codec`, `undefined` where an entry is absent. */
export function unpackValues({ values, found }, codec) {
  const out = new Array(found.length);
  let start = 0;
  for (let i = 0; i < found.length; i++) {
    const end = values.ends[i];
    out[i] = found[i] ? codec.decode(values.bytes.subarray(start, end)) : undefined;
    start = end;
  }
  return out;
}
