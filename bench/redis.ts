/**
 * `npm run bench -- --redis single,sentinel,cluster [--wait 0,1]`: the bridge over Redis topologies,
 * in one run with the same traffic. Four webhook destinations (receivers in this process), every
 * event routed to all four, one bridge process (`--role all`). Per topology and `waitReplicas`:
 *
 * - fixed rate: R events/s for S seconds, p50/p99/max from emit to delivery over all destinations;
 * - burst: N events, delivered events/s (each event reaches all four destinations);
 * - CPU ms per 1,000 events of the bridge, of Redis (summed over the topology's processes), of the
 *   simulator and of the receivers (this process);
 * - with waitReplicas: the WAIT duration p50/p99 and the peak of unconfirmed events.
 *
 * Topologies: `single` (one redis-server, AOF everysec as the main bench), `sentinel` (master, 2
 * replicas, 3 sentinels) and `cluster` (3 masters, 1 replica each). `single` has no replica, so it
 * runs with waitReplicas 0 only. The destination ids are chosen so that their queues' slots cover
 * all 3 cluster masters with at most 2 per master. JSON goes to bench/results/redis-*.json.
 *
 *   --redis LIST   topologies (default single,sentinel,cluster)
 *   --wait LIST    waitReplicas values (default 0,1)
 *   --events N     burst size (default 20000)
 *   --rate R       fixed-rate phase, events/s (default 500)
 *   --seconds S    fixed-rate phase length (default 10)
 *   --rounds K     repeat every case K times, alternating the order; report medians
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { keySlot } from '../src/queue/slot.js';
import { BridgeProcess, writeConfig } from '../test/support/bridge-process.js';
import { WebhookReceiver, type ReceivedRequest } from '../test/support/receiver.js';
import { ClusterGroup, SentinelGroup } from '../test/support/redis-topologies.js';
import { RedisServer, waitFor } from '../test/support/redis.js';
import { cpuMsOf, redisPid } from './process-stats.js';
import { SimProcess } from './sim-client.js';

const RESULTS = resolve(import.meta.dirname, 'results');
const SECRET = 'whsec_YmVuY2gtc2VjcmV0LWZvci1pbWtpdC1icmlkZ2UtYmVuY2g=';
const ACCOUNT = 'bench-0';
const WARMUP = 500;
const DESTINATIONS = 4;
const TOPOLOGIES = ['single', 'sentinel', 'cluster'] as const;
type Topology = (typeof TOPOLOGIES)[number];

interface Case {
  readonly topology: Topology;
  readonly waitReplicas: number;
}

interface CaseResult extends Case {
  burst: { events: number; seconds: number; eventsPerSecond: number; deliveriesPerSecond: number };
  latency: { rate: number; events: number; p50Ms: number; p99Ms: number; maxMs: number };
  cpuMsPer1k: { bridge: number; redis: number; simulator: number; receivers: number };
  wait?: { p50Ms: number; p99Ms: number; count: number; unconfirmedPeak: number };
}

/** A running topology: the bridge's `redis:` keys and the pids whose CPU counts as Redis. */
interface RunningRedis {
  readonly redisConfig: Record<string, unknown>;
  readonly pids: () => number[];
  readonly slots?: Record<string, string>;
  close(): Promise<void>;
}

function options() {
  const { values } = parseArgs({
    options: {
      redis: { type: 'string', default: TOPOLOGIES.join(',') },
      wait: { type: 'string', default: '0,1' },
      events: { type: 'string', default: '20000' },
      rate: { type: 'string', default: '500' },
      seconds: { type: 'string', default: '10' },
      rounds: { type: 'string', default: '1' },
    },
  });
  const topologies = values.redis.split(',').filter(Boolean) as Topology[];
  for (const t of topologies)
    if (!TOPOLOGIES.includes(t)) throw new Error(`--redis takes ${TOPOLOGIES.join(', ')}`);
  const waits = values.wait.split(',').map(Number);
  const o = {
    topologies,
    waits,
    events: Number(values.events),
    rate: Number(values.rate),
    seconds: Number(values.seconds),
    rounds: Number(values.rounds),
  };
  if (![o.events, o.rate, o.seconds, o.rounds].every((n) => Number.isInteger(n) && n > 0))
    throw new Error('usage: bench --redis single,cluster [--wait 0,1] [--events N] [--rate R] [--seconds S]');
  if (!waits.every((n) => Number.isInteger(n) && n >= 0 && n <= 5)) throw new Error('--wait takes 0..5');
  return o;
}

const t0 = Date.now();
function say(line: string): void {
  console.log(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(6)}s] ${line}`);
}

/** Destination ids whose cluster queue slots land on every master, at most 2 per master. */
function spreadIds(masterOfSlot: (slot: number) => string): { ids: string[]; slots: Record<string, string> } {
  const perMaster = new Map<string, number>();
  const ids: string[] = [];
  const slots: Record<string, string> = {};
  const masters = new Set<string>();
  for (let n = 0; ids.length < DESTINATIONS && n < 10_000; n++) {
    const id = `hook${n}`;
    const slot = keySlot(`{webhook-${id}}`);
    const master = masterOfSlot(slot);
    const count = perMaster.get(master) ?? 0;
    // The first three go to three different masters; the fourth to any with room.
    if (count >= (ids.length < 3 ? 1 : 2)) continue;
    perMaster.set(master, count + 1);
    masters.add(master);
    ids.push(id);
    slots[id] = `slot ${slot} on ${master}`;
  }
  if (ids.length < DESTINATIONS || masters.size < 3)
    throw new Error('could not spread destinations over the masters');
  return { ids, slots };
}

async function startRedis(topology: Topology): Promise<RunningRedis & { ids: string[] }> {
  const defaultIds = Array.from({ length: DESTINATIONS }, (_, i) => `hook${i}`);
  if (topology === 'single') {
    const server = await RedisServer.start();
    const client = new Redis(server.url);
    await client.config('SET', 'appendfsync', 'everysec');
    client.disconnect();
    const pid = redisPid(server.port);
    return {
      redisConfig: { url: server.url },
      pids: () => (pid === undefined ? [] : [pid]),
      ids: defaultIds,
      close: () => server.close(),
    };
  }
  if (topology === 'sentinel') {
    const group = await SentinelGroup.start({ replicas: 2, sentinels: 3, proxied: false });
    return {
      redisConfig: { sentinels: group.sentinelUrls, name: group.name },
      pids: () => group.pids,
      ids: defaultIds,
      close: () => group.close(),
    };
  }
  const cluster = await ClusterGroup.start({ masters: 3, replicasPerMaster: 1, nodeTimeoutMs: 5_000 });
  const layout = await cluster.layout();
  const masterOfSlot = (slot: number) =>
    String(layout.find((n) => n.role === 'master' && n.slots.some(([a, b]) => slot >= a && slot <= b))?.port);
  const { ids, slots } = spreadIds(masterOfSlot);
  return {
    redisConfig: { cluster: cluster.urls },
    pids: () => cluster.pids,
    ids,
    slots,
    close: () => cluster.close(),
  };
}

async function runCase(
  c: Case,
  sim: SimProcess,
  o: ReturnType<typeof options>,
): Promise<CaseResult & { slots?: Record<string, string> }> {
  say(`${c.topology}, waitReplicas ${c.waitReplicas}: starting`);
  const redis = await startRedis(c.topology);
  const receivers = await Promise.all(redis.ids.map(() => WebhookReceiver.start({ secret: SECRET })));
  const tokens = await sim.tokens([ACCOUNT]);
  const config = {
    redis: {
      prefix: `rb${Date.now().toString(36)}`,
      waitReplicas: c.waitReplicas,
      waitTimeout: '500ms',
      ...redis.redisConfig,
    },
    server: { host: '127.0.0.1', port: 0 },
    imkit: { url: sim.url },
    accounts: [{ id: ACCOUNT, token: tokens[ACCOUNT] }],
    webhooks: redis.ids.map((id, i) => ({ id, url: receivers[i]!.url, secret: SECRET })),
    log: { level: 'info' },
  };
  const bridge = await BridgeProcess.start(writeConfig(config));
  try {
    await bridge.waitReady(60_000);
    await waitFor(
      async () => (await sim.request<'connected'>({ op: 'connected', account: ACCOUNT })).count > 0,
      {
        timeoutMs: 15_000,
        what: 'bridge connected',
      },
    );
    const delivered = () => receivers.reduce((n, r) => n + r.requests.filter(ok).length, 0);
    const until = async (count: number, timeoutMs: number) =>
      waitFor(() => delivered() >= count, { timeoutMs, intervalMs: 10, what: `${count} deliveries` });

    await sim.request<'emitted'>({ op: 'burst', account: ACCOUNT, count: WARMUP, tag: 'warmup' });
    await until(WARMUP * DESTINATIONS, 60_000);

    let unconfirmedPeak = 0;
    const poll = setInterval(() => {
      void metricsOf(bridge).then(
        (m) => (unconfirmedPeak = Math.max(unconfirmedPeak, m.unconfirmed)),
        () => {},
      );
    }, 100);
    const waitBefore = await metricsOf(bridge);

    say(`${c.topology}, waitReplicas ${c.waitReplicas}: ${o.rate} events/s for ${o.seconds} s`);
    const marks = receivers.map((r) => r.requests.length);
    const rateEvents = o.rate * o.seconds;
    const atRate = delivered();
    await sim.request<'emitted'>({
      op: 'rate',
      account: ACCOUNT,
      perSecond: o.rate,
      seconds: o.seconds,
      tag: 'rate',
    });
    await until(atRate + rateEvents * DESTINATIONS, 120_000);
    const latencies = receivers
      .flatMap((r, i) => r.requests.slice(marks[i]).filter(ok))
      .map(
        (r) => r.at - (JSON.parse(r.body) as { data: { message: { sentAt: number } } }).data.message.sentAt,
      )
      .sort((a, b) => a - b);

    say(`${c.topology}, waitReplicas ${c.waitReplicas}: burst of ${o.events} events`);
    const cpu = () => ({
      bridge: cpuMsOf(bridge.pid),
      redis: redis.pids().reduce((n, pid) => n + safeCpu(pid), 0),
      simulator: cpuMsOf(sim.pid),
      receivers: (process.cpuUsage().user + process.cpuUsage().system) / 1000,
    });
    const atBurst = delivered();
    const before = cpu();
    const burst = await sim.request<'emitted'>({
      op: 'burst',
      account: ACCOUNT,
      count: o.events,
      tag: 'burst',
    });
    await until(atBurst + o.events * DESTINATIONS, 300_000);
    const lastAt = Math.max(...receivers.flatMap((r) => r.requests.filter(ok).map((q) => q.at)));
    const after = cpu();
    clearInterval(poll);
    const waitAfter = await metricsOf(bridge);
    const seconds = (lastAt - burst.firstAt) / 1000;
    const per1k = (k: keyof typeof after) => round(((after[k] - before[k]) / o.events) * 1000, 1);
    const waits = histogramDiff(waitBefore.waitBuckets, waitAfter.waitBuckets);
    return {
      ...c,
      ...(redis.slots ? { slots: redis.slots } : {}),
      burst: {
        events: o.events,
        seconds: round(seconds, 2),
        eventsPerSecond: Math.round(o.events / seconds),
        deliveriesPerSecond: Math.round((o.events * DESTINATIONS) / seconds),
      },
      latency: {
        rate: o.rate,
        events: rateEvents,
        p50Ms: percentile(latencies, 50),
        p99Ms: percentile(latencies, 99),
        maxMs: latencies.at(-1) ?? 0,
      },
      cpuMsPer1k: {
        bridge: per1k('bridge'),
        redis: per1k('redis'),
        simulator: per1k('simulator'),
        receivers: per1k('receivers'),
      },
      ...(c.waitReplicas > 0
        ? {
            wait: {
              count: waits.count,
              p50Ms: round(quantile(waits, 0.5) * 1000, 3),
              p99Ms: round(quantile(waits, 0.99) * 1000, 3),
              unconfirmedPeak,
            },
          }
        : {}),
    };
  } catch (err) {
    console.error(bridge.logs.slice(-20).join('\n'));
    throw err;
  } finally {
    await bridge.stop('SIGTERM');
    await Promise.all(receivers.map((r) => r.close()));
    await redis.close();
  }
}

const ok = (r: ReceivedRequest) => r.status !== undefined && r.status < 300;

function safeCpu(pid: number): number {
  try {
    return cpuMsOf(pid);
  } catch {
    return 0;
  }
}

interface Buckets {
  readonly le: number[];
  readonly counts: number[];
}

async function metricsOf(bridge: BridgeProcess): Promise<{ unconfirmed: number; waitBuckets: Buckets }> {
  const text = (await bridge.get('/metrics')).body;
  const unconfirmed = Number(/^imkit_bridge_ingest_unconfirmed_events (\S+)$/m.exec(text)?.[1] ?? 0);
  const le: number[] = [];
  const counts: number[] = [];
  for (const m of text.matchAll(
    /^imkit_bridge_redis_wait_duration_seconds_bucket\{le="([^"]+)"\} (\S+)$/gm,
  )) {
    le.push(m[1] === '+Inf' ? Infinity : Number(m[1]));
    counts.push(Number(m[2]));
  }
  return { unconfirmed, waitBuckets: { le, counts } };
}

function histogramDiff(a: Buckets, b: Buckets): Buckets & { count: number } {
  const counts = b.counts.map((c, i) => c - (a.counts[i] ?? 0));
  return { le: b.le, counts, count: counts.at(-1) ?? 0 };
}

/** A quantile from cumulative buckets, interpolated within the bucket as Prometheus does. */
function quantile(h: Buckets & { count: number }, q: number): number {
  if (h.count === 0) return 0;
  const rank = q * h.count;
  for (let i = 0; i < h.le.length; i++) {
    if (h.counts[i]! >= rank) {
      const lower = i === 0 ? 0 : h.le[i - 1]!;
      const upper = Number.isFinite(h.le[i]!) ? h.le[i]! : lower;
      const below = i === 0 ? 0 : h.counts[i - 1]!;
      const inBucket = h.counts[i]! - below;
      return inBucket === 0 ? upper : lower + ((upper - lower) * (rank - below)) / inBucket;
    }
  }
  return h.le.at(-2) ?? 0;
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

function round(n: number, digits: number): number {
  return Math.round(n * 10 ** digits) / 10 ** digits;
}

/** Field-by-field median of numbers over rounds. */
function medianOf<T extends object>(results: readonly T[]): T {
  const merge = (parts: unknown[]): unknown => {
    const first = parts[0];
    if (typeof first === 'number') {
      const sorted = (parts as number[]).slice().sort((a, b) => a - b);
      const mid = Math.floor(sorted.length / 2);
      return sorted.length % 2 ? sorted[mid] : round((sorted[mid - 1]! + sorted[mid]!) / 2, 3);
    }
    if (first && typeof first === 'object')
      return Object.fromEntries(
        Object.keys(first).map((k) => [k, merge(parts.map((p) => (p as Record<string, unknown>)[k]))]),
      );
    return first;
  };
  return merge([...results]) as T;
}

export async function redisBench(): Promise<void> {
  const o = options();
  mkdirSync(RESULTS, { recursive: true });
  const cases: Case[] = o.topologies.flatMap((topology) =>
    o.waits
      .filter((w) => topology !== 'single' || w === 0)
      .map((waitReplicas) => ({ topology, waitReplicas })),
  );
  const loadAtStart = loadavg().map((l) => round(l, 2));
  const sim = await SimProcess.start();
  const byCase = new Map<string, CaseResult[]>();
  let slots: Record<string, string> | undefined;
  try {
    for (let r = 0; r < o.rounds; r++) {
      // Alternating the order keeps whatever else the machine is doing from favouring one case.
      for (const c of r % 2 === 0 ? cases : [...cases].reverse()) {
        const { slots: caseSlots, ...result } = await runCase(c, sim, o);
        slots ??= caseSlots;
        const key = `${c.topology}/${c.waitReplicas}`;
        byCase.set(key, [...(byCase.get(key) ?? []), result]);
      }
    }
  } finally {
    sim.stop();
  }
  const results = [...byCase.values()].map((runs) => medianOf(runs));
  const loadAtEnd = loadavg().map((l) => round(l, 2));
  console.log(
    `\n${DESTINATIONS} webhook destinations, every event to all; ${o.rounds > 1 ? `median of ${o.rounds} rounds; ` : ''}` +
      `burst of ${o.events} events, ${o.rate} events/s for ${o.seconds} s; ${cpus().length} CPUs; ` +
      `load average ${loadAtStart.join(' ')} at start, ${loadAtEnd.join(' ')} at end`,
  );
  console.table(
    results.map((r) => ({
      topology: r.topology,
      waitReplicas: r.waitReplicas,
      'burst events/s': r.burst.eventsPerSecond,
      'deliveries/s': r.burst.deliveriesPerSecond,
      [`p50 ms @${o.rate}/s`]: r.latency.p50Ms,
      [`p99 ms @${o.rate}/s`]: r.latency.p99Ms,
      [`max ms @${o.rate}/s`]: r.latency.maxMs,
      'CPU ms/1k bridge': r.cpuMsPer1k.bridge,
      'CPU ms/1k redis': r.cpuMsPer1k.redis,
      'WAIT p50/p99 ms': r.wait ? `${r.wait.p50Ms}/${r.wait.p99Ms}` : '',
      'unconfirmed peak': r.wait?.unconfirmedPeak ?? '',
    })),
  );
  if (slots)
    console.log(
      `cluster destinations: ${Object.entries(slots)
        .map(([id, s]) => `${id} ${s}`)
        .join('; ')}`,
    );
  const json = {
    at: new Date().toISOString(),
    machine: {
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model,
      node: process.version,
      loadAverageAtStart: loadAtStart,
      loadAverageAtEnd: loadAtEnd,
    },
    options: o,
    clusterDestinations: slots,
    results,
    rounds: Object.fromEntries(byCase),
  };
  const file = join(RESULTS, `redis-${json.at.replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, `${JSON.stringify(json, null, 2)}\n`);
  console.log(`results: ${file}`);
}
