import { readFile } from 'node:fs/promises';
import type { AccountConfig } from '../config/schema.js';
import { BridgeError, TokenUnavailableError } from '../errors.js';
import type { ImkitRest } from './imkit-rest.js';

/** Where an account's IMKIT client token comes from. */
export interface TokenProvider {
  /** The token to send with the next auth2 (or REST call). */
  token(): Promise<string>;
  /** The last token was refused: the next `token()` must not return it from a cache. */
  invalidate(): void;
}

/** `token:` in the config. Invalidation cannot help; the operator must change the config. */
export class StaticTokenProvider implements TokenProvider {
  constructor(private readonly value: string) {}
  async token(): Promise<string> {
    return this.value;
  }
  invalidate(): void {}
}

/** `tokenFile:` re-read on every call, so a rotated Kubernetes Secret is used by the next auth2. */
export class FileTokenProvider implements TokenProvider {
  constructor(private readonly path: string) {}

  async token(): Promise<string> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'error';
      throw new TokenUnavailableError(`token file ${this.path} unreadable (${code})`, { cause: err });
    }
    const token = text.trim();
    if (!token) throw new TokenUnavailableError(`token file ${this.path} is empty`);
    return token;
  }

  invalidate(): void {}
}

/**
 * `issueToken: true`: asks IMKIT for a token with the API key, caches it, and fetches a new one
 * after an auth failure or when little of its lifetime is left (less than 10% of it, at most 1 h
 * before expiry), so a long-running bridge never presents an expired token.
 */
export class IssuedTokenProvider implements TokenProvider {
  private current: { token: string; issuedAt: number; expiresAt: number } | undefined;
  private inflight: Promise<string> | undefined;

  constructor(
    private readonly rest: Pick<ImkitRest, 'issueToken'>,
    private readonly clientId: string,
    private readonly now: () => number = Date.now,
  ) {}

  async token(): Promise<string> {
    const cur = this.current;
    if (cur) {
      const margin = Math.min((cur.expiresAt - cur.issuedAt) * 0.1, 3600_000);
      if (cur.expiresAt - this.now() > margin) return cur.token;
    }
    // Concurrent callers (socket and catch-up) share one issuance.
    this.inflight ??= this.issue().finally(() => (this.inflight = undefined));
    return this.inflight;
  }

  invalidate(): void {
    this.current = undefined;
  }

  private async issue(): Promise<string> {
    const issuedAt = this.now();
    try {
      const { token, expiresAt } = await this.rest.issueToken(this.clientId);
      this.current = { token, issuedAt, expiresAt };
      return token;
    } catch (err) {
      const why = err instanceof BridgeError ? err.code : 'error';
      throw new TokenUnavailableError(`issuing a token for ${this.clientId} failed (${why})`, { cause: err });
    }
  }
}

export function createTokenProvider(
  account: AccountConfig,
  rest: Pick<ImkitRest, 'issueToken'>,
): TokenProvider {
  if (account.token !== undefined) return new StaticTokenProvider(account.token);
  if (account.tokenFile !== undefined) return new FileTokenProvider(account.tokenFile);
  return new IssuedTokenProvider(rest, account.id);
}
