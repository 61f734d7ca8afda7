// The functions of ./src/lib.rs in JavaScript, with the same results:
//   risk(amount Float64, country Utf8) -> Float64, tier(merchant_id Utf8) -> Utf8, and the
//   aggregate median(Float64) -> Float64.
//
// Build: node ../../../guest-sdk/js/build.mjs risk.js -o sql_functions_js.wasm
// Then in SQL: CREATE FUNCTION risk AS 'sql_functions_js.wasm';

import { aggregate, functions } from '@sabot/agent';

const HIGH_RISK = new Set(['KP', 'IR', 'SY']);

export default functions({
  risk: {
    args: ['Float64', 'Utf8'],
    returns: 'Float64',
    call(amount, country) {
      if (amount === null || country === null) return null;
      let score = amount / 1000;
      if (HIGH_RISK.has(country)) score += 2;
      if (amount > 5000) score += 0.5;
      return score;
    },
  },
  tier: {
    args: ['Utf8'],
    returns: 'Utf8',
    call(merchant) {
      if (merchant === null) return null;
      const digits = merchant.startsWith('m') ? merchant.slice(1) : '';
      if (!/^[0-9]+$/.test(digits)) return 'unknown';
      const n = Number(digits);
      return n < 100 ? 'gold' : n < 1000 ? 'silver' : 'bronze';
    },
  },
  median: aggregate({
    input: 'Float64',
    returns: 'Float64',
    create: () => [],
    add: (values, v) => {
      values.push(v);
    },
    result(values) {
      if (values.length === 0) return null;
      const sorted = Float64Array.from(values).sort();
      const n = sorted.length;
      return n % 2 === 1 ? sorted[(n - 1) / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
    },
  }),
});
