// @sabot/agent: Sabot agents in JavaScript over apache-arrow Tables.
//
// An agent module's default export is one of:
// - a class: `constructor(config)`, `process(table, port)`, and optionally
//   `onWatermark(ms)` and `onTimers(timers)`;
// - an object with those methods (`init(config)` instead of a constructor);
// - a function `(table, port) => output`, for a stateless transform.
//
// `process` returns what to emit: nothing, a Table or RecordBatch (port 0), or an array of those
// and of `{port, table}` objects. Throw an `AgentError` for bad input or configuration; any other
// exception is reported as an internal error of the agent, never a trap.
//
// `sabot-agent-build agent.js -o agent.wasm` bundles the module with apache-arrow and this SDK
// and turns it into a component of the `timed-agent` world.

import { PortDecoder, encodeOutputs } from './ipc.js';
import { AgentError, toAgentError } from './error.js';

export { AgentError } from './error.js';
export { take, withColumn, keysOf, stateKey, stringsOf } from './table.js';
export { log, metrics, ValueState, MapState, timers, json, bytes } from './host.js';
export { functions, aggregate } from './function.js';

/** Raised towards the host as `err(agent-error)`. */
class Reported extends Error {
  constructor(record) {
    super(record.message);
    Object.defineProperty(this, 'payload', { value: record, enumerable: false });
  }
}

function call(kind, f) {
  try {
    return f();
  } catch (e) {
    throw new Reported(toAgentError(e, kind));
  }
}

/**
 * The outputs of one call, as `output` records. Batches without rows are dropped, except when
 * `answering` (the call was a batch without rows: the host's question of what the agent returns,
 * which an empty batch answers with its columns) or for an output marked `keepEmpty`.
 */
export function toOutputs(result, answering = false) {
  if (result === undefined || result === null) return [];
  const items = Array.isArray(result) ? result : [result];
  const out = [];
  for (const item of items) {
    if (item === undefined || item === null) continue;
    if (typeof item === 'object' && 'port' in item && !('schema' in item)) {
      const data = item.table ?? item.batch;
      if (!Number.isInteger(item.port) || item.port < 0) {
        throw new TypeError(`an output port is a non-negative integer; got ${item.port}`);
      }
      out.push(...encodeOutputs(data, item.port, answering || item.keepEmpty === true));
    } else {
      out.push(...encodeOutputs(item, 0, answering));
    }
  }
  return out;
}

/**
 * The `handler` and `time-handler` exports for `definition` (see the top of this file).
 * `sabot-agent-build` calls this for the module's default export.
 */
export function exportAgent(definition) {
  let agent = null;
  const decoders = [];
  const isClass =
    typeof definition === 'function' && typeof definition.prototype?.process === 'function';
  const isFunction = typeof definition === 'function' && !isClass;
  if (!isClass && !isFunction && typeof definition?.process !== 'function') {
    throw new TypeError(
      'the agent module must export default a class with process(table, port), an object with process(table, port), or a function (table, port) => output',
    );
  }

  const handler = {
    init(config) {
      return call('invalid-config', () => {
        const parsed = config === '' ? {} : JSON.parse(config);
        if (isClass) {
          agent = new definition(parsed);
        } else if (isFunction) {
          agent = { process: definition };
        } else {
          agent = definition;
          agent.init?.(parsed);
        }
      });
    },
    process(port, batch) {
      return call('internal', () => {
        if (agent === null) throw AgentError.internal('process called before init');
        const decoder = (decoders[port] ??= new PortDecoder());
        let table;
        try {
          table = decoder.decode(batch);
        } catch (e) {
          throw AgentError.invalidInput(`port ${port}: not an Arrow IPC batch: ${e.message}`);
        }
        return toOutputs(agent.process(table, port), table.numRows === 0);
      });
    },
  };

  const timeHandler = {
    onWatermark(watermark) {
      return call('internal', () => toOutputs(agent?.onWatermark?.(Number(watermark))));
    },
    onTimers(list) {
      return call('internal', () => {
        if (typeof agent?.onTimers !== 'function') return [];
        const due = list.map((t) => ({ domain: t.domain, key: t.key, ts: Number(t.ts) }));
        return toOutputs(agent.onTimers(due));
      });
    },
  };

  return { handler, timeHandler };
}
