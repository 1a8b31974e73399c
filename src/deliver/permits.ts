/**
 * At most `size` holders at once, served first come first served: one destination's sends in flight
 * across every job its worker runs (a batch job sends its events in parallel, or in chunks).
 */
export class Permits {
  private available: number;
  private readonly waiters: { readonly count: number; readonly resolve: () => void }[] = [];

  constructor(size: number) {
    this.available = Math.max(1, size);
  }

  /** `count` permits at once (at most `size`), so two chunks never each hold part of what they need. */
  acquire(count = 1): Promise<void> {
    if (this.waiters.length === 0 && this.available >= count) {
      this.available -= count;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiters.push({ count, resolve }));
  }

  release(count = 1): void {
    this.available += count;
    while (this.waiters.length > 0 && this.available >= this.waiters[0]!.count) {
      const next = this.waiters.shift()!;
      this.available -= next.count;
      next.resolve();
    }
  }
}
