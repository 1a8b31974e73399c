import { expect, it } from 'vitest';
import { parseRetryAfter, retryDelay } from '../../src/deliver/backoff.js';

const policy = { schedule: [5_000, 300_000, 1_800_000], jitter: 0.2 };

it('follows the schedule by attempt, with jitter inside ±jitter', () => {
  expect(retryDelay(policy, 1, undefined, () => 0.5)).toBe(5_000);
  expect(retryDelay(policy, 2, undefined, () => 0.5)).toBe(300_000);
  expect(retryDelay(policy, 1, undefined, () => 0)).toBe(4_000);
  expect(retryDelay(policy, 1, undefined, () => 0.999999)).toBe(6_000);
  // Past the end of the schedule (a producer with a longer one), the last wait repeats.
  expect(retryDelay(policy, 9, undefined, () => 0.5)).toBe(1_800_000);
});

it('lets Retry-After lengthen a wait, never shorten it, and caps it at the longest wait', () => {
  expect(retryDelay(policy, 1, 60_000, () => 0.5)).toBe(60_000);
  expect(retryDelay(policy, 2, 1_000, () => 0.5)).toBe(300_000);
  expect(retryDelay(policy, 1, 7 * 86_400_000, () => 0.5)).toBe(1_800_000);
});

it('parses Retry-After as seconds or an HTTP date', () => {
  const now = Date.parse('2026-01-01T00:00:00Z');
  expect(parseRetryAfter('120', now)).toBe(120_000);
  expect(parseRetryAfter('Thu, 01 Jan 2026 00:00:30 GMT', now)).toBe(30_000);
  expect(parseRetryAfter('Wed, 31 Dec 2025 23:00:00 GMT', now)).toBe(0);
  expect(parseRetryAfter('soon', now)).toBeUndefined();
  expect(parseRetryAfter(undefined, now)).toBeUndefined();
});
