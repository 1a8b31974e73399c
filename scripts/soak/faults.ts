import type { ScriptedResponse } from '../../test/support/receiver.js';
import { waitFor } from '../../test/support/redis.js';
import type { SoakCluster } from './cluster.js';
import type { Rng } from './rng.js';
import type { TrafficGenerator } from './traffic.js';

/**
 * Fault kinds, in four lanes that run side by side. Socket-side faults hit one ingest replica at a
 * time and the next waits until that replica is fully back: the other replica always holds every
 * account, so every emitted event reaches the bridge (what reaches no replica is not the bridge's to
 * lose). The 410 burst is the only fault that makes events permanent (dead-lettered by contract).
 * Broker faults crash (SIGKILL) and restart the broker behind a broker destination.
 */
export const INGEST_FAULTS = ['ingest-kill', 'socket-half-open', 'socket-drop', 'token-expiry'] as const;
export const INFRA_FAULTS = ['worker-kill', 'redis-restart', 'malformed-stretch'] as const;
export const WEBHOOK_FAULTS = [
  'webhook-500',
  'webhook-429',
  'webhook-timeout',
  'webhook-refused',
  'webhook-reset',
  'webhook-410',
] as const;
export const BROKER_FAULTS = ['nats-kill', 'redis-stream-kill'] as const;

export type FaultKind =
  | (typeof INGEST_FAULTS)[number]
  | (typeof INFRA_FAULTS)[number]
  | (typeof WEBHOOK_FAULTS)[number]
  | (typeof BROKER_FAULTS)[number];

/** One planned fault: when (ms after traffic starts), what, on which target, for how long. */
export interface PlannedFault {
  readonly at: number;
  readonly kind: FaultKind;
  readonly target: string;
  readonly durationMs: number;
  /** Redis restarts: SIGKILL instead of SIGTERM (broker faults always SIGKILL). */
  readonly abrupt?: boolean;
}

/** What actually happened, for the report. */
export interface FaultRecord extends PlannedFault {
  startedAt: number;
  endedAt?: number;
  note?: string;
}

type WebhookMode = 'ok' | '500' | '429' | 'hang' | 'reset' | '410';

/**
 * Plans faults from a seed: each lane walks a shuffled list of its kinds (every kind at least once),
 * with seeded gaps, inside [start, end] ms of the run.
 */
export function planFaults(
  rng: Rng,
  options: {
    startMs: number;
    endMs: number;
    replicas: number;
    workers: number;
    webhooks: readonly string[];
    accounts: readonly string[];
  },
): PlannedFault[] {
  const lane = (kinds: readonly FaultKind[], lrng: Rng): PlannedFault[] => {
    const span = options.endMs - options.startMs;
    // Roughly one fault per 4 s per lane, but every kind of the lane at least once.
    const count = Math.max(kinds.length, Math.floor(span / 4_000));
    const order: FaultKind[] = [];
    while (order.length < count) order.push(...shuffle([...kinds], lrng));
    const slot = span / count;
    return order.slice(0, count).map((kind, i) => {
      const at = Math.round(options.startMs + i * slot + lrng.next() * slot * 0.5);
      return describeFault(kind, at, lrng, options);
    });
  };
  return [
    ...lane(INGEST_FAULTS, rng.fork()),
    ...lane(INFRA_FAULTS, rng.fork()),
    ...lane(WEBHOOK_FAULTS, rng.fork()),
    ...lane(BROKER_FAULTS, rng.fork()),
  ].sort((a, b) => a.at - b.at);
}

function describeFault(
  kind: FaultKind,
  at: number,
  rng: Rng,
  o: { replicas: number; workers: number; webhooks: readonly string[]; accounts: readonly string[] },
): PlannedFault {
  const replica = `ingest-${rng.int(0, o.replicas - 1)}`;
  switch (kind) {
    case 'ingest-kill':
    case 'socket-half-open':
    case 'socket-drop':
      return { at, kind, target: replica, durationMs: rng.int(500, 2_500) };
    case 'token-expiry':
      return { at, kind, target: `${replica}/${rng.pick(o.accounts)}`, durationMs: rng.int(1_000, 3_000) };
    case 'worker-kill':
      return { at, kind, target: `worker-${rng.int(0, o.workers - 1)}`, durationMs: rng.int(500, 2_500) };
    case 'redis-restart':
      return { at, kind, target: 'redis', durationMs: rng.int(300, 2_000), abrupt: rng.next() < 0.5 };
    case 'malformed-stretch':
      return { at, kind, target: 'simulator', durationMs: rng.int(1_000, 2_500) };
    case 'webhook-410':
      return { at, kind, target: rng.pick(o.webhooks), durationMs: rng.int(200, 500) };
    case 'nats-kill':
      return { at, kind, target: 'nats', durationMs: rng.int(500, 2_500), abrupt: true };
    case 'redis-stream-kill':
      return { at, kind, target: 'stream-redis', durationMs: rng.int(300, 2_000), abrupt: true };
    default:
      return { at, kind, target: rng.pick(o.webhooks), durationMs: rng.int(1_000, 4_000) };
  }
}

function shuffle<T>(items: T[], rng: Rng): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(rng.next() * (i + 1));
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
  return items;
}

/** Carries out a plan against a running cluster, lane by lane, and records what happened. */
export class FaultInjector {
  readonly records: FaultRecord[] = [];
  private readonly modes = new Map<string, WebhookMode>();
  private stopped = false;
  /** When each ingest replica was last confirmed back with every account (start: now). */
  private readonly healthySince: number[];
  /** Pending sleeps; stop() ends them early so every lane undoes its fault and returns. */
  private readonly sleeps = new Map<NodeJS.Timeout, () => void>();

  constructor(
    private readonly cluster: SoakCluster,
    private readonly traffic: TrafficGenerator,
    private readonly log: (line: string) => void,
  ) {
    this.healthySince = Array.from({ length: cluster.replicaCount }, () => Date.now());
    for (const [id, receiver] of cluster.receivers) {
      this.modes.set(id, 'ok');
      receiver.respondWith(() => RESPONSES[this.modes.get(id) ?? 'ok']);
    }
  }

  /** Runs the plan; resolves when every fault has been injected and undone. */
  async run(plan: readonly PlannedFault[], startedAt: number): Promise<void> {
    const lanes = new Map<string, PlannedFault[]>();
    for (const fault of plan) {
      const lane = laneOf(fault.kind);
      lanes.set(lane, [...(lanes.get(lane) ?? []), fault]);
    }
    await Promise.all(
      [...lanes.values()].map(async (faults) => {
        for (const fault of faults) {
          const wait = startedAt + fault.at - Date.now();
          if (wait > 0) await this.sleep(wait);
          if (this.stopped) return;
          await this.inject(fault);
        }
      }),
    );
  }

  stop(): void {
    this.stopped = true;
    for (const [timer, wake] of this.sleeps) {
      clearTimeout(timer);
      wake();
    }
    this.sleeps.clear();
    for (const id of this.modes.keys()) this.modes.set(id, 'ok');
  }

  private async inject(fault: PlannedFault): Promise<void> {
    const record: FaultRecord = { ...fault, startedAt: Date.now() };
    this.records.push(record);
    this.log(`fault ${fault.kind} on ${fault.target} for ${fault.durationMs} ms`);
    const c = this.cluster;
    try {
      switch (fault.kind) {
        case 'ingest-kill': {
          const i = index(fault.target);
          const waited = await this.soleHolderFlushed(i);
          if (waited > 0)
            record.note = `waited ${waited} ms for events only ${fault.target} held to reach Redis`;
          await c.killIngest(i);
          await this.sleep(fault.durationMs);
          await c.startIngest(i);
          await this.replicaBack(i, record.startedAt);
          break;
        }
        case 'socket-half-open':
        case 'socket-drop': {
          const i = index(fault.target);
          if (fault.kind === 'socket-half-open') c.proxies[i]!.freeze();
          else c.proxies[i]!.drop();
          await this.replicaBack(i, record.startedAt);
          break;
        }
        case 'token-expiry': {
          const [replica, account] = fault.target.split('/') as [string, string];
          const i = index(replica);
          c.expireToken(i, account);
          // IMKIT checks tokens at auth2, so the expiry bites on the next connection.
          c.proxies[i]!.drop();
          await this.sleep(fault.durationMs);
          c.rotateToken(i, account);
          await this.replicaBack(i, record.startedAt);
          break;
        }
        case 'worker-kill': {
          const i = index(fault.target);
          await c.killWorker(i);
          await this.sleep(fault.durationMs);
          await c.startWorker(i);
          break;
        }
        case 'redis-restart':
          await c.redis.restart({ downMs: fault.durationMs, kill9: fault.abrupt ?? false });
          break;
        case 'nats-kill':
          await c.nats!.kill();
          await this.sleep(fault.durationMs);
          await c.nats!.startProcess();
          break;
        case 'redis-stream-kill':
          await c.streamRedis!.restart({ downMs: fault.durationMs, kill9: true });
          break;
        case 'malformed-stretch': {
          const until = Date.now() + fault.durationMs;
          while (Date.now() < until && !this.stopped) {
            this.traffic.malformed();
            await this.sleep(50);
          }
          break;
        }
        case 'webhook-refused': {
          const receiver = c.receivers.get(fault.target)!;
          await receiver.stop();
          await this.sleep(fault.durationMs);
          await receiver.listen();
          break;
        }
        default: {
          this.modes.set(fault.target, MODE_OF[fault.kind]!);
          await this.sleep(fault.durationMs);
          this.modes.set(fault.target, 'ok');
        }
      }
    } catch (err) {
      record.note = `injection error: ${(err as Error).message}`;
      this.log(`fault ${fault.kind} on ${fault.target}: ${record.note}`);
    }
    record.endedAt = Date.now();
  }

  /** The replica has every account authenticated again, on a session newer than the fault. */
  private async replicaBack(i: number, since: number): Promise<void> {
    await waitFor(() => this.stopped || this.cluster.replicaLive(i, since), {
      timeoutMs: 90_000,
      intervalMs: 200,
      what: `ingest-${i} live again`,
    });
    this.healthySince[i] = Date.now();
  }

  /**
   * While another replica was down, replica `i` alone received the events; if Redis was down too,
   * they sit only in its memory. Killing it then would lose them (the in-memory buffer is not
   * durable, by design), which is a triple fault, not the single crash this fault models. So the
   * kill waits until `i`'s buffer has been seen empty after every other replica came back: from
   * then on, whatever `i` holds the others hold too. Returns how long it waited.
   */
  private async soleHolderFlushed(i: number): Promise<number> {
    const started = Date.now();
    const othersBack = Math.max(...this.healthySince.filter((_, j) => j !== i));
    await waitFor(
      async () => this.stopped || (Date.now() > othersBack && (await this.cluster.bufferedIn(i)) === 0),
      { timeoutMs: 90_000, intervalMs: 100, what: `ingest-${i} to flush what only it received` },
    );
    return Date.now() - started;
  }

  private sleep(ms: number): Promise<void> {
    if (this.stopped) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.sleeps.delete(timer);
        resolve();
      }, ms);
      this.sleeps.set(timer, resolve);
    });
  }
}

const RESPONSES: Record<WebhookMode, ScriptedResponse> = {
  ok: { status: 204 },
  '500': { status: 500, body: 'soak: injected failure' },
  '429': { status: 429, headers: { 'retry-after': '1' } },
  hang: { hang: true },
  reset: { destroy: true },
  '410': { status: 410, body: 'soak: gone' },
};

const MODE_OF: Partial<Record<FaultKind, WebhookMode>> = {
  'webhook-500': '500',
  'webhook-429': '429',
  'webhook-timeout': 'hang',
  'webhook-reset': 'reset',
  'webhook-410': '410',
};

function laneOf(kind: FaultKind): string {
  if ((INGEST_FAULTS as readonly string[]).includes(kind)) return 'ingest';
  if ((INFRA_FAULTS as readonly string[]).includes(kind)) return 'infra';
  if ((BROKER_FAULTS as readonly string[]).includes(kind)) return 'broker';
  return 'webhook';
}

function index(target: string): number {
  return Number(target.slice(target.lastIndexOf('-') + 1));
}
