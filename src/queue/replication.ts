import { Cluster, type Redis } from 'ioredis';
import type { Counter } from 'prom-client';
import type { BridgeMetrics } from '../admin/metrics.js';
import type { Logger } from '../lifecycle/logger.js';

export interface ReplicationOptions {
  /** Replicas that must hold a write before it counts as landed (`redis.waitReplicas`, > 0). */
  readonly waitReplicas: number;
  /** Longest a single WAIT blocks (`redis.waitTimeout`). */
  readonly waitTimeoutMs: number;
  /** The node connection that owns `key` (the connection itself outside Cluster). */
  readonly masterFor: (key: string) => Redis | undefined;
  /** A WAIT failed: on Cluster the slot may have moved, so refresh the slot map now. */
  readonly onWaitError?: () => void;
  readonly metrics: BridgeMetrics;
  readonly logger: Logger;
}

/** One write on one node connection, awaiting replica acknowledgement. */
export interface Landing {
  readonly connection: Redis;
  /** The connection's generation when the write was sent: a reconnect since means it may be lost. */
  readonly generation: number;
  /** Events it carried, for the re-landed count. */
  readonly events: number;
  /** Replicas acknowledged it: the writer may forget it (deliver, release). */
  readonly confirmed: () => void;
  /** It may not survive a failover: the writer lands it again, under a fresh job id. */
  readonly lost: () => void;
}

/**
 * The confirm half of ingest's writes (`redis.waitReplicas`): a write is landed only once `WAIT`
 * on the connection that made it says enough replicas hold it. A master can acknowledge a write and
 * then die before any replica received it; the replica promoted in its place never saw it.
 *
 * WAIT answers only for the writes of its own connection (a fresh connection answers at once), so
 * it goes on the node connection that did the write, as a command of its own: pipelined with writes,
 * a Cluster redirect error would differ from WAIT's and ioredis would not retry the pipeline. A
 * connection that closed since the write may have been moved to a new master: its writes are
 * reported lost and landed again.
 */
export class ReplicaConfirmer {
  private readonly generations = new WeakMap<Redis, number>();
  private readonly log: Logger;
  private outstanding: Landing[] = [];
  private lastShortfall: number | undefined;

  constructor(private readonly options: ReplicationOptions) {
    this.log = options.logger.child({ component: 'replication' });
  }

  /** The node connection for a write to `key`, with its current generation. */
  target(key: string): { connection: Redis; generation: number } | undefined {
    const connection = this.options.masterFor(key);
    if (!connection) return undefined;
    return { connection, generation: this.generation(connection) };
  }

  /** Records a write answered by its master; `confirm()` settles it. */
  written(landing: Landing): void {
    this.outstanding.push(landing);
  }

  /**
   * The `/readyz` reason while the last WAIT fell short, until one succeeds:
   * `0 of 1 replicas acknowledged within 500ms (waitReplicas); N events held in memory`.
   */
  problem(heldEvents: number): string | undefined {
    if (this.lastShortfall === undefined) return undefined;
    const { waitReplicas, waitTimeoutMs } = this.options;
    return `${shortfallText(this.lastShortfall, waitReplicas, waitTimeoutMs)}; ${heldEvents} events held in memory`;
  }

  /**
   * One WAIT per connection with outstanding writes, in parallel (Cluster: one per master).
   * Confirmed writes and lost writes are settled; those that fell short stay outstanding for the
   * next call, whose WAIT covers them again (it waits for the connection's latest offset).
   */
  async confirm(): Promise<void> {
    const byConnection = new Map<Redis, Landing[]>();
    for (const landing of this.outstanding) {
      const list = byConnection.get(landing.connection);
      if (list) list.push(landing);
      else byConnection.set(landing.connection, [landing]);
    }
    this.outstanding = [];
    const short = await Promise.all(
      [...byConnection].map(([connection, landings]) => this.confirmOn(connection, landings)),
    );
    if (!short.includes(true)) this.lastShortfall = undefined;
  }

  /** True when replicas fell short (the writes stay outstanding). */
  private async confirmOn(connection: Redis, landings: Landing[]): Promise<boolean> {
    const { waitReplicas, waitTimeoutMs, metrics } = this.options;
    const generation = this.generation(connection);
    const started = performance.now();
    let acked: number;
    try {
      acked = await connection.wait(waitReplicas, waitTimeoutMs);
    } catch (err) {
      // UNBLOCKED (the master became a replica), WAIT on a replica, MOVED, a closed connection.
      this.log.warn({ err }, 'WAIT failed; landing the unconfirmed writes again');
      this.options.onWaitError?.();
      this.lose(landings);
      return false;
    }
    metrics.redisWaitDuration.observe((performance.now() - started) / 1000);
    const stale = landings.filter(
      (l) => l.generation !== generation || this.generation(connection) !== generation,
    );
    if (stale.length > 0) this.lose(stale);
    const current = landings.filter((l) => !stale.includes(l));
    if (current.length === 0) return false;
    if (acked >= waitReplicas) {
      for (const landing of current) landing.confirmed();
      return false;
    }
    metrics.redisWaitShortfalls.inc();
    if (this.lastShortfall === undefined)
      this.log.warn(
        { acked, waitReplicas, waitTimeoutMs },
        'replicas did not acknowledge writes in time; holding them in memory',
      );
    this.lastShortfall = acked;
    this.outstanding.push(...current);
    return true;
  }

  private lose(landings: Landing[]): void {
    const events = landings.reduce((sum, l) => sum + l.events, 0);
    if (events > 0) this.options.metrics.redisRelanded.inc(events);
    for (const landing of landings) landing.lost();
  }

  private generation(connection: Redis): number {
    let generation = this.generations.get(connection);
    if (generation === undefined) {
      generation = 0;
      this.generations.set(connection, generation);
      // Whatever the connection carried before a close may be on a master that is gone.
      connection.on('close', () =>
        this.generations.set(connection, (this.generations.get(connection) ?? 0) + 1),
      );
    }
    return generation;
  }
}

/**
 * Counts master changes a client lives through: a connection that becomes ready on another address
 * (Sentinel promoted a replica), or a Cluster slot map with a master it did not have (a failover).
 */
export function watchMasterChanges(client: Redis | Cluster, changes: Counter): void {
  if (client instanceof Cluster) {
    let masters: Set<string> | undefined;
    client.on('refresh', () => {
      const now = new Set(client.nodes('master').map((n) => `${n.options.host}:${n.options.port}`));
      if (masters && [...now].some((address) => !masters!.has(address))) changes.inc();
      masters = now;
    });
    return;
  }
  let address: string | undefined;
  client.on('ready', () => {
    const stream = client.stream as { remoteAddress?: string; remotePort?: number } | undefined;
    const now =
      stream?.remoteAddress === undefined ? undefined : `${stream.remoteAddress}:${stream.remotePort}`;
    if (address !== undefined && now !== undefined && now !== address) changes.inc();
    address = now ?? address;
  });
}

/** `0 of 1 replicas acknowledged within 500ms (waitReplicas)`. */
export function shortfallText(acked: number, replicas: number, timeoutMs: number): string {
  return `${acked} of ${replicas} replicas acknowledged within ${timeoutMs}ms (waitReplicas)`;
}

/**
 * One WAIT on `node`, the connection that made the writes: undefined once `replicas` hold them, else
 * the shortfall in words. For writers that report success (a destination's `delivered`, `dlq replay`).
 */
export async function replicaShortfall(
  node: Redis | undefined,
  replicas: number,
  timeoutMs: number,
): Promise<string | undefined> {
  if (!node) return 'no Redis master known for the written key';
  const acked = await node.wait(replicas, timeoutMs);
  return acked >= replicas ? undefined : shortfallText(acked, replicas, timeoutMs);
}
