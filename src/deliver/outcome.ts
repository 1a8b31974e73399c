import { retryDelay, type RetryPolicy } from './backoff.js';
import type { SendOutcome } from './destination.js';

/** What one try came to: the destination's outcome, or `held` when the breaker kept the event back. */
export type AttemptResult = SendOutcome | { readonly kind: 'held'; readonly waitMs: number };

/** Why an attempt did not deliver, as the destination put it (never a credential). */
export interface Failure {
  readonly reason: string;
  readonly status?: number;
  readonly response?: string;
}

/** What happens to the event next. `attempt`: the number of the try that just ended, 1-based. */
export type Next =
  | { readonly step: 'done' }
  /** The breaker is open: pause the queue for `waitMs`; no attempt used. */
  | { readonly step: 'hold'; readonly waitMs: number }
  /** Shutdown or a job's abort cut the try off: back to waiting, no attempt used. */
  | { readonly step: 'hand-back' }
  | { readonly step: 'retry'; readonly attempt: number; readonly delayMs: number; readonly failure: Failure }
  | {
      readonly step: 'dead';
      readonly attempt: number;
      readonly why: 'permanent' | 'exhausted';
      readonly failure: Failure;
    };

/**
 * The one place that turns a try's result into what happens next: the batch path, the single-event
 * path and BullMQ's backoff only apply the answer. The retry delay is computed here once, with the
 * far end's requested wait (`Retry-After`, `waitMs`) folded in by `retryDelay`.
 */
export function decide(
  result: AttemptResult,
  attempt: number,
  policy: RetryPolicy,
  random: () => number = Math.random,
): Next {
  switch (result.kind) {
    case 'delivered':
      return { step: 'done' };
    case 'held':
      return { step: 'hold', waitMs: result.waitMs };
    case 'aborted':
      return { step: 'hand-back' };
    case 'permanent':
      return { step: 'dead', attempt, why: 'permanent', failure: failureOf(result) };
    case 'retry':
      if (scheduleSpent(attempt, policy)) {
        return { step: 'dead', attempt, why: 'exhausted', failure: failureOf(result) };
      }
      return {
        step: 'retry',
        attempt,
        delayMs: retryDelay(policy, attempt, result.waitMs, random),
        failure: failureOf(result),
      };
  }
}

/**
 * How a try counts for the circuit breaker: an answer, even a permanent refusal, shows the far end
 * is up; a retry is a failure; an aborted try says nothing about it.
 */
export function breakerVerdict(outcome: SendOutcome): 'succeeded' | 'failed' | 'released' {
  switch (outcome.kind) {
    case 'delivered':
    case 'permanent':
      return 'succeeded';
    case 'retry':
      return 'failed';
    case 'aborted':
      return 'released';
  }
}

/** Whether the try numbered `attempt` (the batch's try included) was the schedule's last. */
function scheduleSpent(attempt: number, policy: RetryPolicy): boolean {
  return attempt >= policy.schedule.length + 1;
}

function failureOf(outcome: Extract<SendOutcome, { kind: 'retry' | 'permanent' }>): Failure {
  return {
    reason: outcome.reason,
    ...(outcome.status !== undefined ? { status: outcome.status } : {}),
    ...(outcome.response !== undefined ? { response: outcome.response } : {}),
  };
}
