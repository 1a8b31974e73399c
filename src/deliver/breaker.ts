export type BreakerState = 'closed' | 'open' | 'half-open';

/**
 * Per-webhook circuit breaker. Pure state, no timers: the worker asks `admit()` before each delivery
 * and reports the outcome. After `failures` consecutive failures it opens for `cooldownMs`; then one
 * probe is let through (half-open): success closes it, failure re-opens it.
 */
export class CircuitBreaker {
  private current: BreakerState = 'closed';
  private consecutiveFailures = 0;
  private openUntil = 0;
  private probeInFlight = false;

  constructor(
    private readonly options: { failures: number; cooldownMs: number },
    private readonly onChange: (state: BreakerState) => void = () => {},
    private readonly now: () => number = Date.now,
  ) {}

  get state(): BreakerState {
    if (this.current === 'open' && this.now() >= this.openUntil) this.transition('half-open');
    return this.current;
  }

  /**
   * Whether a delivery may go out now. `{ allowed: false, waitMs }` tells the caller how long to hold
   * the webhook's jobs back; `probe: true` marks the single half-open trial.
   */
  admit(): { allowed: true; probe: boolean } | { allowed: false; waitMs: number } {
    const state = this.state;
    if (state === 'closed') return { allowed: true, probe: false };
    if (state === 'open') return { allowed: false, waitMs: Math.max(1, this.openUntil - this.now()) };
    if (this.probeInFlight) return { allowed: false, waitMs: Math.min(1000, this.options.cooldownMs) };
    this.probeInFlight = true;
    return { allowed: true, probe: true };
  }

  /** ms until an open breaker lets a probe through; 0 unless open. */
  remainingMs(): number {
    return this.state === 'open' ? Math.max(1, this.openUntil - this.now()) : 0;
  }

  /** `probe` must be what `admit()` returned, so only the probe's outcome decides the half-open state. */
  succeeded(probe: boolean): void {
    if (probe) this.probeInFlight = false;
    this.consecutiveFailures = 0;
    if (this.current !== 'closed') this.transition('closed');
  }

  failed(probe: boolean): void {
    if (probe) this.probeInFlight = false;
    this.consecutiveFailures += 1;
    if (probe || (this.current === 'closed' && this.consecutiveFailures >= this.options.failures)) {
      this.openUntil = this.now() + this.options.cooldownMs;
      this.transition('open');
    }
  }

  /** A probe that ended without an answer (shutdown) must not leave the breaker stuck half-open. */
  released(probe: boolean): void {
    if (probe) this.probeInFlight = false;
  }

  private transition(state: BreakerState): void {
    if (this.current === state) return;
    this.current = state;
    this.onChange(state);
  }
}
