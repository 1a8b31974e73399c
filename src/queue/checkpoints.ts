import { checkpointKey } from './names.js';
import { producerConnection, type RedisClient, type RedisSettings } from './redis.js';

/** How often the checkpoints of live accounts are written. */
export const CHECKPOINT_INTERVAL_MS = 5_000;

/**
 * Per account, a time before which everything the account received has landed in Redis: its
 * checkpoint, kept in Redis. A process that starts (a restart, a rolling upgrade, a crash) reads it on
 * its first live connection and catches up from it. Every replica writes it; the newest time wins.
 * Which time is safe to write is the caller's policy (`positions`); this class only stores it.
 */
export class SessionCheckpoints {
  private readonly connection: RedisClient;
  private readonly prefix: string;
  private readonly cluster: boolean;
  private timer: NodeJS.Timeout | undefined;
  private closing: Promise<void> | undefined;

  constructor(
    settings: RedisSettings,
    /** Per account, the time its checkpoint may move to now (accounts absent: not written). */
    private readonly positions: () => ReadonlyMap<string, number>,
    private readonly intervalMs = CHECKPOINT_INTERVAL_MS,
  ) {
    this.prefix = settings.prefix;
    this.cluster = settings.topology === 'cluster';
    this.connection = producerConnection(settings, 'imkit-bridge-checkpoints');
    // A failed write leaves a checkpoint where it was: the next catch-up only starts earlier.
    this.connection.on('error', () => {});
  }

  start(): void {
    this.timer ??= setInterval(() => void this.write(), this.intervalMs);
    this.timer.unref();
  }

  /**
   * Epoch ms of `account`'s checkpoint, or undefined when it has none. Waits for the connection (at
   * start-up a session can go live before it is up) until `signal` aborts; rejects when Redis fails
   * to answer, and the caller decides whether to try again.
   */
  async read(account: string, signal: AbortSignal): Promise<number | undefined> {
    await this.connected(signal);
    const value = await this.connection.get(this.key(account));
    const at = value === null ? NaN : Number(value);
    return Number.isFinite(at) ? at : undefined;
  }

  /**
   * Writes the current positions in one script call (on Cluster the keys share a slot; a pipeline of
   * calls would not be accepted there); a checkpoint only ever moves forward. Never rejects.
   */
  async write(positions: ReadonlyMap<string, number> = this.positions()): Promise<void> {
    if (positions.size === 0 || this.connection.status !== 'ready') return;
    const keys = [...positions.keys()].map((account) => this.key(account));
    const times = [...positions.values()].map(String);
    await this.connection.eval(ADVANCE_MANY, keys.length, ...keys, ...times).catch(() => undefined);
  }

  /** Stops the periodic write, writes `final` if Redis is connected (never waits for it), disconnects. */
  close(final: ReadonlyMap<string, number>): Promise<void> {
    this.closing ??= (async () => {
      clearInterval(this.timer);
      await this.write(final);
      this.connection.disconnect();
    })();
    return this.closing;
  }

  private connected(signal: AbortSignal): Promise<void> {
    if (this.connection.status === 'ready') return Promise.resolve();
    return new Promise((resolve, reject) => {
      const done = (err?: Error) => {
        this.connection.off('ready', onReady);
        signal.removeEventListener('abort', onAbort);
        if (err) reject(err);
        else resolve();
      };
      const onReady = () => done();
      const onAbort = () => done(signal.reason as Error);
      if (signal.aborted) return onAbort();
      this.connection.once('ready', onReady);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  private key(account: string): string {
    return checkpointKey(this.prefix, account, this.cluster);
  }
}

const ADVANCE_MANY = `for i, key in ipairs(KEYS) do
  local current = tonumber(redis.call('GET', key) or '0')
  if tonumber(ARGV[i]) > current then redis.call('SET', key, ARGV[i]) end
end
return 0`;
