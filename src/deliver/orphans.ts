import { Job, type Queue } from 'bullmq';
import type { RedisClient } from '../queue/redis.js';

/**
 * Finds jobs this process's workers own in Redis but no longer know about, and puts them back in
 * waiting. It happens across a Redis restart: a command that moved the next job to active ran, but
 * its reply was lost with the connection, and the re-sent command fails ("Missing key"). The job
 * then sits active under our lock until BullMQ's stalled check frees it (lock 10 s + up to two
 * stalled intervals). A job counts as orphaned only if it is seen twice, one check apart, with the
 * same token of one of our workers and not in flight, so a reply still in transit is never touched.
 */
export class OrphanSweeper {
  private suspects = new Map<string, string>();

  constructor(
    private readonly connection: RedisClient,
    private readonly queue: Queue,
    /** Worker ids (lock tokens are `<worker id>:<n>`) that belong to this process. */
    private readonly ownWorkerIds: () => ReadonlySet<string>,
    /** Tokens of deliveries in progress right now. */
    private readonly inFlightTokens: () => ReadonlySet<string>,
  ) {}

  /** Returns the ids of the jobs moved back to waiting. */
  async sweep(): Promise<string[]> {
    const activeIds = await this.connection.lrange(this.queue.toKey('active'), 0, -1);
    const tokens = activeIds.length
      ? await this.connection.mget(...activeIds.map((id) => `${this.queue.toKey(id)}:lock`))
      : [];
    const owners = this.ownWorkerIds();
    const inFlight = this.inFlightTokens();
    const suspects = new Map<string, string>();
    const recovered: string[] = [];
    for (const [i, jobId] of activeIds.entries()) {
      const token = tokens[i];
      if (!token || inFlight.has(token) || !owners.has(token.slice(0, token.lastIndexOf(':')))) continue;
      if (this.suspects.get(jobId) !== token) {
        suspects.set(jobId, token);
        continue;
      }
      const job = await Job.fromId(this.queue, jobId);
      if (!job) continue;
      try {
        await job.moveToWait(token);
        recovered.push(jobId);
      } catch {
        // The lock changed hands or the job finished since we looked: it is no longer an orphan.
      }
    }
    this.suspects = suspects;
    return recovered;
  }
}
