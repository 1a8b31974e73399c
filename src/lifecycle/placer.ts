import type { BridgeMetrics } from '../admin/metrics.js';
import type { Logger } from './logger.js';
import type { AccountHolder, MoveCause } from './ingest.js';
import type { Member, Membership, MembershipView } from './membership.js';
import { Placement, type Plan } from './placement.js';

/** Sessions connecting at once per process: bounds the burst when a process takes many accounts at a time (slots are refilled every tenth of a tick). */
const ACQUIRE_CONCURRENCY = 100;

export interface SharingStatus {
  copies: number;
  lease: number;
  member: string;
  synced: boolean;
  eligible: boolean;
  members: { id: string; host: string; joinedAt: string; eligibleAt: string; leaseLeftMs: number }[];
  /** Accounts this process is a target of. */
  mine: number;
  held: string[];
  /** Held here, no longer a target, kept until its new holders are live. */
  releasing: string[];
}

/**
 * Turns membership views into holds and releases: acquires the accounts this process is a target of
 * (takeovers of an expired holder first), and lets an account go only once every one of its new
 * targets reports it live, so coverage never drops below `copies` through a move. While the view is
 * unsynced (Redis away) it keeps everything and changes nothing.
 */
export class AccountPlacer {
  private readonly placement: Placement;
  private readonly log: Logger;
  private plan: Plan | undefined;
  private planned: { epoch: number; now: number; members: readonly Member[] } | undefined;
  /** Accounts this process is a target of and does not hold yet, with why they come to it. */
  private readonly wanted = new Map<string, { cause: MoveCause; from: string[] }>();
  private confirming = false;
  private handingOver = false;
  /** The next `acquire()` before the next tick, while accounts wait for a connecting slot. */
  private refill: NodeJS.Timeout | undefined;

  constructor(
    private readonly membership: Membership,
    private readonly holder: AccountHolder,
    private readonly opts: {
      accounts: readonly string[];
      copies: number;
      lease: number;
      logger: Logger;
      metrics: BridgeMetrics;
    },
  ) {
    this.placement = new Placement(opts.accounts, opts.copies);
    this.log = opts.logger.child({ stage: 'placement' });
  }

  start(): void {
    this.membership.on('tick', (view) => this.onTick(view));
    this.membership.start();
  }

  /** Why this process is not ready: not a synced member, or an account it is a target of not live. */
  readinessProblems(): string[] {
    const view = this.membership.view();
    if (!view?.synced) return ['membership: not registered (redis unreachable or first ticks pending)'];
    const live = this.holder.live();
    return [...(this.plan?.mine ?? [])]
      .filter((account) => !live.has(account))
      .map((account) => `account ${account}: not authenticated`);
  }

  status(): SharingStatus {
    const view = this.membership.view();
    const self = view?.members.find((m) => m.id === this.membership.id);
    const mine = this.plan?.mine ?? new Set<string>();
    const held = [...this.holder.held()].sort();
    return {
      copies: this.opts.copies,
      lease: this.opts.lease,
      member: this.membership.id,
      synced: view?.synced ?? false,
      eligible: self !== undefined && view !== undefined && self.eligibleAt <= view.now,
      members: (view?.members ?? []).map((m) => ({
        id: m.id,
        host: m.host,
        joinedAt: new Date(m.joinedAt).toISOString(),
        eligibleAt: new Date(m.eligibleAt).toISOString(),
        leaseLeftMs: Math.max(0, m.expiresAt - view!.now),
      })),
      mine: mine.size,
      held,
      releasing: held.filter((account) => !mine.has(account)),
    };
  }

  /**
   * SIGTERM: leaves the membership at once, so the others plan without this process at their next
   * tick, then keeps each account until its new targets report it live, for at most `budgetMs`.
   */
  async handover(budgetMs: number): Promise<void> {
    this.handingOver = true;
    clearTimeout(this.refill);
    const view = this.membership.view();
    if (!(await this.membership.leave()) || !view) return;
    const others = view.members.filter((m) => m.id !== this.membership.id);
    if (others.length === 0) return;
    const { targets } = this.placement.plan(others, this.membership.id, view.now);
    const started = Date.now();
    const deadline = started + budgetMs;
    while (this.holder.held().size > 0 && Date.now() < deadline) {
      await this.releaseConfirmed(targets, 'leave', started);
      if (this.holder.held().size > 0) await sleep(Math.min(this.membership.tickMs, deadline - Date.now()));
    }
    const unconfirmed = this.holder.held().size;
    if (unconfirmed > 0)
      this.log.warn({ accounts: unconfirmed }, 'handover incomplete: closing the rest unconfirmed');
  }

  private onTick(view: MembershipView): void {
    this.membership.reportHeld(this.holder.live());
    if (!view.synced || this.handingOver) return;
    if (this.replanNeeded(view)) this.replan(view);
    const plan = this.plan!;
    this.acquire();
    const releasing = new Map<string, readonly string[]>();
    for (const account of this.holder.held())
      if (!plan.mine.has(account)) releasing.set(account, plan.targets.get(account) ?? []);
    if (releasing.size > 0 && !this.confirming) {
      this.confirming = true;
      void this.releaseConfirmed(releasing, 'rebalance', Date.now()).finally(() => (this.confirming = false));
    }
  }

  /** A new epoch (join, leave, expiry) or a member whose settle ended since the last plan. */
  private replanNeeded(view: MembershipView): boolean {
    const last = this.planned;
    if (!last || last.epoch !== view.epoch) return true;
    return view.members.some((m) => m.eligibleAt > last.now && m.eligibleAt <= view.now);
  }

  /** The new plan, and why each account this process is newly a target of comes to it. */
  private replan(view: MembershipView): void {
    const previous =
      this.plan && this.planned ? { plan: this.plan, members: this.planned.members } : undefined;
    this.plan = this.placement.plan(view.members, view.self, view.now);
    this.planned = { epoch: view.epoch, now: view.now, members: view.members };
    const present = new Set(view.members.map((m) => m.id));
    const gone = (previous?.members ?? []).filter((m) => !present.has(m.id));
    const held = this.holder.held();
    for (const account of this.wanted.keys()) if (!this.plan.mine.has(account)) this.wanted.delete(account);
    for (const account of this.plan.mine) {
      if (held.has(account) || this.wanted.has(account)) continue;
      if (!previous) {
        this.wanted.set(account, { cause: 'start', from: [] });
        continue;
      }
      const was = previous.plan.targets.get(account) ?? [];
      const from = gone.filter((m) => was.includes(m.id));
      // A member purged for its lease was past its lease end; one that left still had time on it.
      const cause: MoveCause =
        from.length === 0 ? 'rebalance' : from.some((m) => m.expiresAt <= view.now) ? 'expire' : 'leave';
      this.wanted.set(account, { cause, from: from.map((m) => m.id) });
    }
  }

  /** Holds the wanted accounts, takeovers of an expired holder first, at most ACQUIRE_CONCURRENCY connecting. */
  private acquire(): void {
    const held = this.holder.held();
    const live = this.holder.live();
    let slots = ACQUIRE_CONCURRENCY - [...held].filter((account) => !live.has(account)).length;
    const order = [...this.wanted].sort(
      ([, a], [, b]) => Number(b.cause === 'expire') - Number(a.cause === 'expire'),
    );
    for (const [account, { cause, from }] of order) {
      if (slots-- <= 0) break;
      this.wanted.delete(account);
      this.holder.hold(account, cause);
      this.opts.metrics.accountMoves.inc({ direction: 'acquired', cause });
      if (cause === 'expire') this.opts.metrics.takeovers.inc();
      this.log.info({ account, cause, from }, 'account acquired');
    }
    // Sessions usually go live well within a tick: refill their slots sooner, or a takeover of
    // thousands of accounts would move at ACQUIRE_CONCURRENCY per tick.
    if (this.wanted.size > 0 && this.refill === undefined) {
      this.refill = setTimeout(() => {
        this.refill = undefined;
        if (!this.handingOver && this.membership.view()?.synced) this.acquire();
      }, this.membership.tickMs / 10);
      this.refill.unref();
    }
  }

  /** Releases the accounts of `targets` that all their targets report live. */
  private async releaseConfirmed(
    targets: ReadonlyMap<string, readonly string[]>,
    cause: MoveCause,
    since: number,
  ): Promise<void> {
    const held = this.holder.held();
    const pending = new Map([...targets].filter(([account]) => held.has(account)));
    let confirmed: Set<string>;
    try {
      confirmed = await this.membership.confirmHeld(pending);
    } catch (err) {
      this.log.warn({ err }, 'cannot check the new holders: keeping the accounts for now');
      return;
    }
    await Promise.all(
      [...confirmed].map(async (account) => {
        // Taken back meanwhile (the plan changed again): keep it.
        if (cause !== 'leave' && this.plan?.mine.has(account)) return;
        await this.holder.release(account);
        this.opts.metrics.accountMoves.inc({ direction: 'released', cause });
        this.log.info(
          { account, to: pending.get(account), waitedMs: Date.now() - since },
          'account released',
        );
      }),
    );
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}
