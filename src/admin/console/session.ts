import { randomBytes } from 'node:crypto';

/** A logged-in browser. `id` is the cookie's secret; `tag` names the session in audit lines instead. */
export interface Session {
  readonly id: string;
  readonly tag: string;
  /** Sent back in every form; a state-changing request without it is refused (csrf.ts). */
  readonly csrf: string;
  readonly expiresAt: number;
  /** Remote address at login, for audit lines. */
  readonly remote: string;
}

export const SESSION_COOKIE = 'imkit_console';

/**
 * Console sessions, in memory only: a restart logs everyone out, which is cheap for a handful of
 * operators and keeps session secrets out of Redis. At most `max` live sessions; a new login
 * past that ends the oldest, so a login loop cannot grow memory.
 */
export class Sessions {
  private readonly live = new Map<string, Session>();

  constructor(
    private readonly ttlMs: number,
    private readonly max = 1_000,
    private readonly now: () => number = Date.now,
  ) {}

  create(remote: string): Session {
    this.sweep();
    if (this.live.size >= this.max) this.live.delete(this.live.keys().next().value!);
    const session: Session = {
      id: secret(),
      tag: randomBytes(4).toString('hex'),
      csrf: secret(),
      expiresAt: this.now() + this.ttlMs,
      remote,
    };
    this.live.set(session.id, session);
    return session;
  }

  get(id: string | undefined): Session | undefined {
    if (id === undefined) return undefined;
    const session = this.live.get(id);
    if (!session) return undefined;
    if (session.expiresAt <= this.now()) {
      this.live.delete(id);
      return undefined;
    }
    return session;
  }

  end(id: string): void {
    this.live.delete(id);
  }

  get ttlSeconds(): number {
    return Math.floor(this.ttlMs / 1000);
  }

  private sweep(): void {
    const now = this.now();
    for (const [id, session] of this.live) if (session.expiresAt <= now) this.live.delete(id);
  }
}

function secret(): string {
  return randomBytes(32).toString('base64url');
}

/** `Set-Cookie` for a session. No `Secure`: the admin port speaks plain HTTP (docs/operations.md, "Console"). */
export function sessionCookie(session: Session, ttlSeconds: number): string {
  return `${SESSION_COOKIE}=${session.id}; HttpOnly; SameSite=Strict; Path=/; Max-Age=${ttlSeconds}`;
}

export function clearedCookie(): string {
  return `${SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0`;
}

/** The session cookie's value from a `Cookie` header. */
export function sessionIdOf(cookieHeader: string | undefined): string | undefined {
  for (const part of (cookieHeader ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === SESSION_COOKIE) return part.slice(eq + 1).trim() || undefined;
  }
  return undefined;
}
