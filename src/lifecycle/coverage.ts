import type { BridgeMetrics } from '../admin/metrics.js';
import type { Logger } from './logger.js';
import type { Membership } from './membership.js';
import { Placement } from './placement.js';

/**
 * A member that has not renewed for this many ticks (or a third of the lease, when longer) no longer
 * counts as holding anything: well before its lease ends, and past the odd late tick of a busy process.
 */
const MISSED_TICKS = 3;

/**
 * `imkit_bridge_accounts_under_copies`: how many accounts fewer than `copies` live members hold.
 * Live here means renewed within the last few ticks, so a killed member stops counting within
 * seconds rather than a lease; holding means reporting the account's session live in its held set. Each member checks only the accounts it ranks first for among the
 * live members, so across the fleet every account is checked once and the gauges add up: one
 * SMISMEMBER per live member per tick, over `accounts / members` accounts.
 */
export class CoverageCheck {
  private readonly firsts: Placement;
  private readonly staleMs: number;
  private readonly log: Logger;
  private timer: NodeJS.Timeout | undefined;
  private checking = false;
  /** The accounts this member ranks first for, for the live set they were computed for. */
  private mine: { live: string; accounts: string[] } | undefined;

  constructor(
    private readonly membership: Membership,
    private readonly opts: {
      accounts: readonly string[];
      copies: number;
      lease: number;
      logger: Logger;
      metrics: BridgeMetrics;
    },
  ) {
    this.firsts = new Placement(opts.accounts, 1);
    this.staleMs = Math.max(MISSED_TICKS * membership.tickMs, opts.lease / 3);
    this.log = opts.logger.child({ stage: 'coverage' });
  }

  start(): void {
    this.timer ??= setInterval(() => void this.check(), this.membership.tickMs);
  }

  /** Stops checking (this process is leaving: the others check its share from now on). */
  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.opts.metrics.accountsUnderCopies.set(0);
  }

  private async check(): Promise<void> {
    if (this.checking) return;
    this.checking = true;
    try {
      const renewed = await this.membership.renewedWithin(this.staleMs);
      // This process is alive whatever its last renewal says (a slow tick must not hide its share).
      const self = this.membership.id;
      const live = renewed.includes(self) ? renewed : [...renewed, self];
      const accounts = this.accountsToCheck(live);
      const counts = await this.membership.holderCounts(accounts, live);
      const under = [...counts.values()].filter((count) => count < this.opts.copies).length;
      if (this.timer) this.opts.metrics.accountsUnderCopies.set(under);
    } catch (err) {
      // Redis away: the membership reports it; the gauge keeps its last value until Redis answers.
      this.log.debug({ err }, 'cannot check account coverage');
    } finally {
      this.checking = false;
    }
  }

  private accountsToCheck(live: readonly string[]): string[] {
    const self = this.membership.id;
    const key = [...live].sort().join('\n');
    if (this.mine?.live !== key) {
      const members = live.map((id) => ({ id, eligibleAt: 0 }));
      this.mine = { live: key, accounts: [...this.firsts.plan(members, self, 0).mine] };
    }
    return this.mine.accounts;
  }
}
