/**
 * A point in time that the phases of one shutdown share: each phase gets what is left of it, so the
 * whole stop stays within `shutdownTimeout` however the time is spent (docs/operations.md, "Shutdown").
 */
export class Deadline {
  private constructor(private readonly at: number) {}

  static in(ms: number): Deadline {
    return new Deadline(Date.now() + ms);
  }

  /** Milliseconds left, never negative. */
  remaining(): number {
    return Math.max(0, this.at - Date.now());
  }

  /** A deadline `fraction` of the way from now to this one. */
  share(fraction: number): Deadline {
    return Deadline.in(this.remaining() * fraction);
  }
}

/** True when `promise` settles within `ms`, false when the time runs out first (it keeps running). */
export async function within(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>(
    (resolve) => (timer = setTimeout(() => resolve(false), Math.max(0, ms))),
  );
  try {
    return await Promise.race([
      promise.then(
        () => true as const,
        () => true as const,
      ),
      timeout,
    ]);
  } finally {
    clearTimeout(timer);
  }
}
