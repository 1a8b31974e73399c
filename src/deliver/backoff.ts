export interface RetryPolicy {
  /** Waits after the first try, the second try, ... (ms). */
  readonly schedule: readonly number[];
  /** 0..1: each wait is scaled by a random factor in [1 - jitter, 1 + jitter]. */
  readonly jitter: number;
}

/**
 * The wait before the next attempt, after `attemptsMade` attempts (1-based). The wait the far end
 * asked for (`Retry-After`) may lengthen it, never shorten it below the schedule, and never beyond
 * the schedule's longest wait, so one receiver cannot park an event for days.
 */
export function retryDelay(
  policy: RetryPolicy,
  attemptsMade: number,
  requestedMs: number | undefined,
  random = Math.random,
): number {
  const { schedule, jitter } = policy;
  if (schedule.length === 0) return 0;
  const base = schedule[Math.min(Math.max(attemptsMade, 1), schedule.length) - 1] ?? 0;
  const jittered = Math.max(0, Math.round(base * (1 + jitter * (2 * random() - 1))));
  if (requestedMs === undefined) return jittered;
  return Math.min(Math.max(jittered, requestedMs), Math.max(...schedule));
}

/** `Retry-After` as delta-seconds or an HTTP date, in ms from `now`; undefined when absent or unparseable. */
export function parseRetryAfter(value: string | string[] | undefined, now = Date.now()): number | undefined {
  const raw = Array.isArray(value) ? value[0] : value;
  if (raw === undefined) return undefined;
  const trimmed = raw.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const at = Date.parse(trimmed);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - now);
}
