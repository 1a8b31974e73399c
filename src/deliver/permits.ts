/**
 * At most `size` holders at once, served first come first served: one webhook's requests in flight
 * across every job its worker runs (a batch job sends its events in parallel).
 */
export class Permits {
  private available: number;
  private readonly waiters: (() => void)[] = [];

  constructor(size: number) {
    this.available = Math.max(1, size);
  }

  acquire(): Promise<void> {
    if (this.available > 0) {
      this.available--;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  release(): void {
    const next = this.waiters.shift();
    if (next) next();
    else this.available++;
  }
}
