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
