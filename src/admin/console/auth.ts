import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

/**
 * Compares a candidate with a secret in constant time: both are hashed first, so neither the length
 * nor the first differing byte shows in the time taken.
 */
export function sameSecret(candidate: string, digestOfSecret: Buffer): boolean {
  return timingSafeEqual(digest(candidate), digestOfSecret);
}

export function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

/** `server.adminToken`, checked as a bearer header or a login form's field. */
export class AdminToken {
  private readonly digest: Buffer;

  constructor(token: string) {
    this.digest = digest(token);
  }

  matches(candidate: string): boolean {
    return sameSecret(candidate, this.digest);
  }

  /** Whether the request carries `Authorization: Bearer <token>`. */
  bearerOf(req: IncomingMessage): boolean {
    const match = /^Bearer +(\S+) *$/i.exec(req.headers.authorization ?? '');
    return match !== null && this.matches(match[1]!);
  }
}
