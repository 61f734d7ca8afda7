// A function module that attacks the planner when it is asked for a call's type: by the
// function the call names, its constructor spins forever (`spin`) or allocates without bound
// (`hog`); `fine` behaves, appending a copy of its argument.
//
// Build: node ../../../../guest-sdk/js/build.mjs hostile_function.js -o hostile_function.wasm

import { withColumn } from '@sabot/agent';

export default class HostileFunction {
  constructor(config) {
    this.config = config;
    if (config.function === 'spin') {
      for (;;) {
        // The deadline stops this.
      }
    }
    if (config.function === 'hog') {
      const kept = [];
      for (;;) kept.push(new Float64Array(1 << 20));
    }
  }

  process(table) {
    const column = table.getChild(this.config.args[0]);
    return { port: 0, table: withColumn(table, this.config.output, column), keepEmpty: true };
  }
}
