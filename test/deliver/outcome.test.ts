import { describe, expect, it } from 'vitest';
import type { SendOutcome } from '../../src/deliver/destination.js';
import { breakerVerdict, decide, type AttemptResult, type Next } from '../../src/deliver/outcome.js';

const policy = { schedule: [1_000, 60_000], jitter: 0 };
const half = () => 0.5;

describe('decide: what a try leads to', () => {
  const failure = { reason: 'HTTP 500', status: 500, response: 'oops' };
  it.each<[string, AttemptResult, number, Next]>([
    ['delivered', { kind: 'delivered' }, 1, { step: 'done' }],
    ['held by the breaker: no attempt used', { kind: 'held', waitMs: 700 }, 2, { step: 'hold', waitMs: 700 }],
    ['aborted by shutdown: handed back', { kind: 'aborted' }, 3, { step: 'hand-back' }],
    [
      'permanent: dead at once, whatever is left of the schedule',
      { kind: 'permanent', reason: 'HTTP 410 Gone', status: 410 },
      1,
      { step: 'dead', attempt: 1, why: 'permanent', failure: { reason: 'HTTP 410 Gone', status: 410 } },
    ],
    [
      'retry on the first try: the first wait',
      { kind: 'retry', ...failure },
      1,
      { step: 'retry', attempt: 1, delayMs: 1_000, failure },
    ],
    [
      'retry on the second try: the second wait',
      { kind: 'retry', reason: 'timeout after 15000 ms' },
      2,
      { step: 'retry', attempt: 2, delayMs: 60_000, failure: { reason: 'timeout after 15000 ms' } },
    ],
    [
      'retry on the last try: schedule exhausted, dead',
      { kind: 'retry', ...failure },
      3,
      { step: 'dead', attempt: 3, why: 'exhausted', failure },
    ],
    [
      'a requested wait lengthens the delay',
      { kind: 'retry', reason: 'HTTP 429', waitMs: 30_000 },
      1,
      { step: 'retry', attempt: 1, delayMs: 30_000, failure: { reason: 'HTTP 429' } },
    ],
    [
      'a requested wait never shortens it',
      { kind: 'retry', reason: 'HTTP 503', waitMs: 10 },
      2,
      { step: 'retry', attempt: 2, delayMs: 60_000, failure: { reason: 'HTTP 503' } },
    ],
    [
      'a requested wait is capped at the longest wait',
      { kind: 'retry', reason: 'HTTP 429', waitMs: 86_400_000 },
      1,
      { step: 'retry', attempt: 1, delayMs: 60_000, failure: { reason: 'HTTP 429' } },
    ],
  ])('%s', (_what, result, attempt, next) => {
    expect(decide(result, attempt, policy, half)).toEqual(next);
  });

  it('with no schedule, the first failure is the last', () => {
    expect(decide({ kind: 'retry', reason: 'x' }, 1, { schedule: [], jitter: 0 })).toEqual({
      step: 'dead',
      attempt: 1,
      why: 'exhausted',
      failure: { reason: 'x' },
    });
  });

  it('jitters the delay within ±jitter', () => {
    const jittery = { schedule: [1_000], jitter: 0.2 };
    const delay = (r: number) => {
      const next = decide({ kind: 'retry', reason: 'x' }, 1, jittery, () => r);
      return next.step === 'retry' ? next.delayMs : undefined;
    };
    expect(delay(0)).toBe(800);
    expect(delay(0.999999)).toBe(1_200);
  });
});

describe('breakerVerdict: how a try counts for the breaker', () => {
  it.each<[SendOutcome, ReturnType<typeof breakerVerdict>]>([
    [{ kind: 'delivered' }, 'succeeded'],
    // The far end answered, so it is up.
    [{ kind: 'permanent', reason: 'HTTP 410 Gone' }, 'succeeded'],
    [{ kind: 'retry', reason: 'ECONNREFUSED' }, 'failed'],
    [{ kind: 'aborted' }, 'released'],
  ])('%j -> %s', (outcome, verdict) => {
    expect(breakerVerdict(outcome)).toBe(verdict);
  });
});
