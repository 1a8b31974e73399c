import { z } from 'zod';
import { MAX_DURATION_MS, parseDuration } from './duration.js';

/** `250ms`, `5s`, `10m`, `2h` or milliseconds, parsed to milliseconds. */
export const requiredDuration = z.union([z.string(), z.number()]).transform((value, ctx) => {
  const ms = parseDuration(value);
  if (ms === undefined) {
    ctx.addIssue({ code: 'custom', message: `not a duration (use 250ms, 5s, 10m, 2h or milliseconds)` });
    return z.NEVER;
  }
  // Node's timers hold 2^31-1 ms; a longer one fires after 1 ms instead.
  if (ms > MAX_DURATION_MS) {
    ctx.addIssue({ code: 'custom', message: `too long: at most ${MAX_DURATION_MS} ms (about 24.8 days)` });
    return z.NEVER;
  }
  return ms;
});

/** The fallback is given in the file's own notation and parsed like any value. */
export const duration = (fallback: string) => requiredDuration.prefault(fallback);

export const httpUrl = z.url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL' });

/** A URL without credentials or query string (those can carry secrets), safe to log and display. */
export function safeUrl(raw: string): string {
  const url = new URL(raw);
  return `${url.protocol}//${url.host}${url.pathname}`;
}
