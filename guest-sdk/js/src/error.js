// The error an agent reports instead of trapping (`agent-error` in `wit/types.wit`).

/** An ordinary error: the host applies the pipeline's bad-batch policy (or refuses to start). */
export class AgentError extends Error {
  /**
   * @param {'invalid-input' | 'invalid-config' | 'internal'} kind whose fault it is
   * @param {string} message what was wrong, with the offending value, and what was expected
   * @param {number} [row] the input row that caused it
   */
  constructor(kind, message, row) {
    super(message);
    this.name = 'AgentError';
    this.kind = kind;
    this.row = row;
  }

  /** The batch, or a row of it, is not what the agent accepts. */
  static invalidInput(message, row) {
    return new AgentError('invalid-input', message, row);
  }

  /** The agent's configuration is not valid: the pipeline cannot start. */
  static invalidConfig(message) {
    return new AgentError('invalid-config', message);
  }

  /** A bug in the agent. */
  static internal(message) {
    return new AgentError('internal', message);
  }

  /** The `agent-error` record the host receives. */
  toRecord() {
    return { kind: this.kind, message: this.message, row: this.row };
  }
}

/** Any thrown value as an `agent-error` record; `kind` for anything that is not an AgentError. */
export function toAgentError(e, kind) {
  if (e instanceof AgentError) return e.toRecord();
  const message = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  return { kind, message, row: undefined };
}
