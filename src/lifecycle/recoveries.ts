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
  private readonly running = new Map<string, Set<Promise<void>>>();
  /** Per account, so a released account's recoveries stop while the others run on. */
  private readonly controllers = new Map<string, AbortController>();
  private closed = false;

  /** `onRelease` runs each time a hold on `account` is released: its checkpoint may move on. */
  constructor(private readonly onRelease: (account: string) => void) {}

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
    let controller = this.controllers.get(account);
    if (!controller) this.controllers.set(account, (controller = new AbortController()));
    if (this.closed) controller.abort();
    const run = task(hold, controller.signal).then(
      (covered) => {
        if (!covered) return;
        holds.delete(hold);
        this.onRelease(account);
      },
      () => undefined,
    );
    let running = this.running.get(account);
    if (!running) this.running.set(account, (running = new Set()));
    running.add(run);
    void run.finally(() => running.delete(run));
  }

  /**
   * Stops `account`'s recoveries and waits for them; their holds stay until `forget(account)`, so the
   * caller can still read where the account's checkpoint may move.
   */
  async stop(account: string): Promise<void> {
    this.controllers.get(account)?.abort();
    this.controllers.delete(account);
    await Promise.all(this.running.get(account) ?? []);
  }

  /** Drops `account`'s holds: it is no longer this process's to write (the next holder re-covers them). */
  forget(account: string): void {
    this.holds.delete(account);
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
    const running = [...this.running.values()].flatMap((runs) => [...runs]);
    if (running.length > 0) await within(Promise.all(running), timeoutMs);
    this.closed = true;
    for (const controller of this.controllers.values()) controller.abort();
  }
}
