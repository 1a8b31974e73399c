import type { Redis } from 'ioredis';
import { createProducerConnection } from './redis.js';

/** How often a live session's "still live at" time is written. */
export const CHECKPOINT_INTERVAL_MS = 5_000;
const READY_TIMEOUT_MS = 5_000;

/**
 * Per account, the last time any ingest process had it live, kept in Redis. A process that starts
 * (a restart, a rolling upgrade, a crash) reads it on its first live connection and catches up on
 * what nobody received in between. Every replica writes it; the newest time wins.
 */
export class SessionCheckpoints {
  private readonly connection: Redis;
  private timer: NodeJS.Timeout | undefined;
  private closing: Promise<void> | undefined;

  constructor(
    redisUrl: string,
    private readonly prefix: string,
    private readonly liveAccounts: () => readonly string[],
    private readonly intervalMs = CHECKPOINT_INTERVAL_MS,
  ) {
    this.connection = createProducerConnection(redisUrl, { name: 'imkit-bridge-checkpoints' });
    // Checkpoints are best effort: an outage only widens the next catch-up window.
    this.connection.on('error', () => {});
  }

  start(): void {
    this.timer ??= setInterval(() => void this.writeAll().catch(() => undefined), this.intervalMs);
    this.timer.unref();
  }

  /** Epoch ms when `account` was last known live, or undefined when never (or Redis is away). */
  async lastLive(account: string): Promise<number | undefined> {
    if (!(await this.ready())) return undefined;
    const value = await this.connection.get(this.key(account)).catch(() => null);
    const at = value === null ? NaN : Number(value);
    return Number.isFinite(at) ? at : undefined;
  }

  /** Records now for one account that just went live (the periodic write covers it afterwards). */
  async markLive(account: string): Promise<void> {
    if (!(await this.ready())) return;
    await this.connection.eval(ADVANCE, 1, this.key(account), String(Date.now()));
  }

  /** Records now for every live account, in one round trip; only ever moves a checkpoint forward. */
  private async writeAll(): Promise<void> {
    const accounts = this.liveAccounts();
    if (accounts.length === 0 || !(await this.ready())) return;
    const at = String(Date.now());
    const pipeline = this.connection.pipeline();
    for (const account of accounts) pipeline.eval(ADVANCE, 1, this.key(account), at);
    await pipeline.exec();
  }

  /** Writes a final checkpoint (the process stops while live) and disconnects; safe to call twice. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      clearInterval(this.timer);
      await this.writeAll().catch(() => undefined);
      this.connection.disconnect();
    })();
    return this.closing;
  }

  /**
   * The connection fails fast while not connected; at start-up the first session can go live before
   * it is, so wait (bounded) for it rather than lose the first read or checkpoint.
   */
  private ready(): Promise<boolean> {
    if (this.connection.status === 'ready') return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (ok: boolean) => {
        clearTimeout(timer);
        this.connection.off('ready', onReady);
        resolve(ok);
      };
      const onReady = () => done(true);
      const timer = setTimeout(() => done(false), READY_TIMEOUT_MS);
      this.connection.once('ready', onReady);
    });
  }

  private key(account: string): string {
    return `${this.prefix}:session:${account}:live-at`;
  }
}

const ADVANCE = `local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > current then redis.call('SET', KEYS[1], ARGV[1]) end
return 0`;
