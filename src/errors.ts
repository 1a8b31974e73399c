/**
 * Base of every error the bridge raises on purpose. `code` is stable and documented so operators
 * and tests can match on it instead of on message text.
 */
export abstract class BridgeError extends Error {
  abstract readonly code: string;

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A problem the operator fixes in the command line or the config file: the CLI exits 1, not 2. */
export abstract class UsageError extends BridgeError {}
