import { within } from './deadline.js';

/** Where a running recovery holds its account's checkpoint; it may set `at` once it knows it. */
export interface CheckpointHold {
  at: number;
}

/**
 * The REST recoveries an ingest process runs in the background, and the checkpoint hold of each: an
 * account's checkpoint may not move past the start of a recovery that has not landed what it
 * fetched. A recovery that covered its window releases its hold; one that did not (shutdown stopped
 * it) keeps it, so the checkpoint stays where it was and the next start fetches the window again.
 */
export class Recoveries {
  private readonly holds = new Map<string, Set<CheckpointHold>>();
  private readonly running = new Set<Promise<void>>();
  private readonly controller = new AbortController();

  /** `onRelease` runs each time a hold is released: the checkpoint may move on. */
  constructor(private readonly onRelease: () => void) {}

  /**
   * Runs `task` in the background with a hold on `account`'s checkpoint at `at`. The task resolves
   * true once its window is covered (the hold is released), false when it stopped short (kept).
   */
  start(
    account: string,
    at: number,
    task: (hold: CheckpointHold, signal: AbortSignal) => Promise<boolean>,
  ): void {
    const hold: CheckpointHold = { at };
    let holds = this.holds.get(account);
    if (!holds) this.holds.set(account, (holds = new Set()));
    holds.add(hold);
    const run = task(hold, this.controller.signal).then(
      (covered) => {
        if (!covered) return;
        holds.delete(hold);
        this.onRelease();
      },
      () => undefined,
    );
    this.running.add(run);
    void run.finally(() => this.running.delete(run));
  }

  /** The earliest hold on `account`'s checkpoint; Infinity when none. */
  heldAt(account: string): number {
    let at = Infinity;
    for (const hold of this.holds.get(account) ?? []) at = Math.min(at, hold.at);
    return at;
  }

  /**
   * Lets running recoveries finish for up to `timeoutMs` (none running: no wait), then tells the rest
   * to stop; those keep their holds.
   */
  async close(timeoutMs: number): Promise<void> {
    if (this.running.size > 0) await within(Promise.all(this.running), timeoutMs);
    this.controller.abort();
  }
}
