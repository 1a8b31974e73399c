/**
 * `npm run bench`: throughput, latency and memory of the bridge against a naive relay, with the same
 * real parts on loopback (private redis-server with AOF, IMKIT simulator in its own process, and the
 * destination's target read here: a signature-verifying receiver, a private nats-server's stream,
 * a queue on the machine's RabbitMQ, a stream or a BullMQ queue on the private Redis). Prints a
 * table, writes JSON to bench/results/.
 *
 *   --destination T   webhook (default), nats, amqp, redis-stream or bullmq: the bridge gets one
 *                     destination of that type, the naive relay publishes the same way (bench/sinks.ts)
 *   --events N        burst size (default 20000)
 *   --rate R          fixed-rate phase, events/s (default 500)
 *   --seconds S       fixed-rate phase length (default 10)
 *   --settle S        seconds at the fixed rate before it is measured, right after the warm-up
 *                     burst (default 2; reported apart as "after a burst")
 *   --idle LIST       account counts for the idle-memory phase (default 100,1000; "" skips it)
 *   --appendfsync P   Redis AOF fsync policy: everysec (default; Redis's default with AOF on) or always
 *                     (as the soak; on this machine's disk it adds a fsync to every write and the
 *                     latency tail with it, see docs/performance.md)
 *   --concurrency C   the bridge webhook's `concurrency` (default: the config default, 16)
 *   --rounds K        measure both relays K times, alternating which goes first; report medians
 *   --split           run the bridge as two processes, `--role ingest` and `--role worker` (the
 *                     chart's default), instead of one `--role all`; its CPU and RSS are their sums
 *   --trace           also run the bridge with tracing on, exporting to an OTLP/HTTP receiver in this
 *                     process (bench/tracing.ts): a third row, and the cost against tracing off
 *   --profile         CPU-profile the bridge (V8 sampling profiler, as --cpu-prof); profiles go to
 *                     bench/results/profiles-*, a summary of where the time goes is printed
 *   --redis LIST      instead: the bridge over Redis topologies (single,sentinel,cluster) with
 *                     `--wait 0,1`; see bench/redis.ts
 *
 * `--processes N` (with `--accounts`, `--copies`, ...) runs the benchmark of accounts shared among
 * ingest processes instead: bench/sharing.ts describes it.
 */
import { fork } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { BridgeProcess, writeConfig } from '../test/support/bridge-process.js';
import { RedisServer, hasRedisServer, waitFor } from '../test/support/redis.js';
import type { NaiveRelaySettings } from './naive-relay.js';
import { metric } from './bridge-metrics.js';
import { aofOf, emptyRedis } from './fresh-redis.js';
import { cpuMsOf, memoryOf, redisPid } from './process-stats.js';
import { summarizeProfiles } from './profile-summary.js';
import { SimProcess } from './sim-client.js';
import { SpanCounter, tracingCost } from './tracing.js';
import {
  DESTINATION_TYPES,
  sinkFactory,
  type Arrival,
  type DestinationType,
  type Sink,
  type SinkFactory,
  type StoredCheck,
} from './sinks.js';

const HERE = import.meta.dirname;
const RESULTS = resolve(HERE, 'results');
const SECRET = 'whsec_YmVuY2gtc2VjcmV0LWZvci1pbWtpdC1icmlkZ2UtYmVuY2g=';
const BURST_ACCOUNT = 'bench-0';
const WARMUP = 500;
/**
 * Webhooks: the targets of issue 4. Brokers (issue 11): 80% of the naive relay's throughput and a
 * p99 of at most 10 ms at 500 events/s, both for NATS and Redis Streams; AMQP and BullMQ are
 * reported against the same aim without a target (docs/performance.md, "Destinations").
 */
const TARGETS: Record<
  DestinationType,
  { throughputRatio?: number; throughputRatioAim: number; p99Ms?: number; p99Inclusive: boolean }
> = {
  webhook: { throughputRatio: 0.6, throughputRatioAim: 0.8, p99Ms: 25, p99Inclusive: false },
  nats: { throughputRatio: 0.8, throughputRatioAim: 0.8, p99Ms: 10, p99Inclusive: true },
  'redis-stream': { throughputRatio: 0.8, throughputRatioAim: 0.8, p99Ms: 10, p99Inclusive: true },
  amqp: { throughputRatioAim: 0.8, p99Inclusive: true },
  bullmq: { throughputRatioAim: 0.8, p99Inclusive: true },
};
const IDLE_RSS_TARGET_MIB = 400;

type RelayName = 'bridge' | 'naive' | 'traced';

interface RelayUnderTest {
  readonly name: RelayName;
  /** Every process of the relay: CPU and memory are summed over them. */
  readonly pids: readonly number[];
  /** Set for the bridge: the process holding the sockets, for readiness checks. */
  readonly bridge?: BridgeProcess;
  stop(): Promise<void>;
}

interface PhaseResult {
  throughput: {
    events: number;
    seconds: number;
    eventsPerSecond: number;
    peakRssMiB: number;
    /**
     * CPU ms per 1,000 events of every process in the path during the burst; `receiver` is the bench
     * process, which reads the destination's target; `broker` the nats-server or RabbitMQ (0 when the
     * target is the bench's Redis or a webhook).
     */
    cpuMsPer1kBy: { relay: number; redis: number; broker: number; simulator: number; receiver: number };
    /** The bridge's garbage-collection pauses per 1,000 events (V8's, as its /metrics reports them); not for the naive relay. */
    gcMsPer1k?: number;
    /** What the burst added to Redis's append-only file per 1,000 events (-1 when a rewrite ran during it). */
    aofKiBPer1k: number;
    /** AOF rewrites Redis started during the burst: each is a fork rewriting the data set on the same cores. */
    aofRewrites: number;
  };
  latency: {
    rate: number;
    events: number;
    p50Ms: number;
    p99Ms: number;
    maxMs: number;
    cpuMsPer1k: number;
    /** The `--settle` seconds at the same rate right after the warm-up burst. */
    afterBurst?: { p50Ms: number; p99Ms: number; maxMs: number };
  };
  /** What the target held once the relay was done, against what the simulator sent. */
  stored: StoredCheck;
}

function options() {
  const { values } = parseArgs({
    options: {
      destination: { type: 'string', default: 'webhook' },
      events: { type: 'string', default: '20000' },
      rate: { type: 'string', default: '500' },
      seconds: { type: 'string', default: '10' },
      settle: { type: 'string', default: '2' },
      idle: { type: 'string', default: '100,1000' },
      profile: { type: 'boolean', default: false },
      appendfsync: { type: 'string', default: 'everysec' },
      concurrency: { type: 'string' },
      rounds: { type: 'string', default: '1' },
      split: { type: 'boolean', default: false },
      trace: { type: 'boolean', default: false },
    },
  });
  if (values.appendfsync !== 'always' && values.appendfsync !== 'everysec')
    throw new Error('--appendfsync takes always or everysec');
  if (!(DESTINATION_TYPES as readonly string[]).includes(values.destination))
    throw new Error(`--destination takes ${DESTINATION_TYPES.join(', ')}`);
  const idle = values.idle === '' ? [] : values.idle.split(',').map(Number);
  const o = {
    destination: values.destination as DestinationType,
    events: Number(values.events),
    rate: Number(values.rate),
    seconds: Number(values.seconds),
    settle: Number(values.settle),
    idle,
    profile: values.profile,
    appendfsync: values.appendfsync,
    concurrency: values.concurrency === undefined ? undefined : Number(values.concurrency),
    rounds: Number(values.rounds),
    split: values.split,
    trace: values.trace,
  };
  if (![o.events, o.rate, o.seconds, o.rounds, ...idle].every((n) => Number.isInteger(n) && n > 0)) {
    throw new Error(
      'usage: bench [--destination T] [--events N] [--rate R] [--seconds S] [--idle 100,1000] [--profile]',
    );
  }
  return o;
}

const t0 = Date.now();
/** Other work on the machine skews every figure; the load average is recorded with them. */
const loadAtStart = loadavg().map((l) => round(l, 2));
function say(line: string): void {
  console.log(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(6)}s] ${line}`);
}

function bridgeConfig(
  redisUrl: string,
  prefix: string,
  simUrl: string,
  tokens: Record<string, string>,
  sink: Sink,
  concurrency: number | undefined,
) {
  return {
    redis: { url: redisUrl, prefix },
    server: { host: '127.0.0.1', port: 0 },
    imkit: { url: simUrl },
    accounts: Object.entries(tokens).map(([id, token]) => ({ id, token })),
    ...sink.bridgeConfig(concurrency),
    log: { level: 'info' },
  };
}

async function startBridge(
  redis: RedisServer,
  sim: SimProcess,
  tokens: Record<string, string>,
  sink: Sink,
  profileDir: string | undefined,
  o: { concurrency?: number | undefined; split: boolean },
  tracing?: SpanCounter,
): Promise<RelayUnderTest & { bridge: BridgeProcess }> {
  const prefix = `bench${Date.now().toString(36)}`;
  const env = {
    ...(profileDir
      ? { NODE_OPTIONS: `--import ${join(HERE, 'cpu-profile-hook.mjs')}`, BENCH_CPU_PROF_DIR: profileDir }
      : {}),
    ...tracing?.env(),
  };
  const config = writeConfig(bridgeConfig(redis.url, prefix, sim.url, tokens, sink, o.concurrency));
  const bridge = await BridgeProcess.start(config, { role: o.split ? 'ingest' : 'all', env });
  const worker = o.split ? await BridgeProcess.start(config, { role: 'worker', env }) : undefined;
  return {
    name: tracing ? 'traced' : 'bridge',
    pids: worker ? [bridge.pid, worker.pid] : [bridge.pid],
    bridge,
    stop: async () => void (await Promise.all([bridge.stop('SIGTERM'), worker?.stop('SIGTERM')])),
  };
}

async function startNaive(
  sim: SimProcess,
  tokens: Record<string, string>,
  sink: Sink,
): Promise<RelayUnderTest> {
  const settings: NaiveRelaySettings = {
    imkitUrl: sim.url,
    accounts: Object.entries(tokens).map(([id, token]) => ({ id, token })),
    destination: sink.naive,
  };
  const child = fork(join(HERE, 'naive-relay.ts'), [JSON.stringify(settings)], {
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  await new Promise<void>((r, reject) => {
    child.once('message', () => r());
    child.once('exit', (code) => reject(new Error(`naive relay exited with ${code}`)));
  });
  const exited = new Promise((r) => child.once('exit', r));
  return {
    name: 'naive',
    pids: [child.pid!],
    stop: async () => {
      child.disconnect();
      await exited;
    },
  };
}

async function waitForDeliveries(
  sink: Sink,
  from: number,
  count: number,
  timeoutMs: number,
): Promise<readonly Arrival[]> {
  return waitFor(
    () => {
      const got = sink.since(from);
      return got.length >= count ? got : undefined;
    },
    { timeoutMs, intervalMs: 10, what: `${count} deliveries` },
  );
}

/** Runs warm-up, burst and fixed-rate phases against one relay. */
async function measure(
  relay: RelayUnderTest,
  sim: SimProcess,
  sink: Sink,
  processes: { redis: number | undefined; redisUrl: string; broker: readonly number[] },
  o: ReturnType<typeof options>,
): Promise<PhaseResult> {
  const cpuNow = () => ({
    relay: sum(relay.pids.map(cpuMsOf)),
    redis: processes.redis ? cpuMsOf(processes.redis) : 0,
    broker: sum(processes.broker.map(cpuMsOf)),
    simulator: cpuMsOf(sim.pid),
    receiver: (process.cpuUsage().user + process.cpuUsage().system) / 1000,
  });
  await waitFor(
    async () => (await sim.request<'connected'>({ op: 'connected', account: BURST_ACCOUNT })).count > 0,
    {
      timeoutMs: 15_000,
      what: `${relay.name} connected`,
    },
  );
  let sent = 0;
  // Warm-up: JIT, connection pools, Redis scripts.
  let from = sink.mark();
  sent += (
    await sim.request<'emitted'>({
      op: 'burst',
      account: BURST_ACCOUNT,
      count: WARMUP,
      tag: `${relay.name}-warmup`,
    })
  ).count;
  await waitForDeliveries(sink, from, WARMUP, 60_000);
  const verifiedWarmup = sink.since(from).every((r) => r.verified !== false);
  if (!verifiedWarmup)
    throw new Error(`${relay.name}: some warm-up deliveries failed signature verification`);

  // Steady state first: the fixed-rate phase must not measure the burst's aftermath (a grown heap,
  // an AOF being flushed), so it runs before the burst, and after `--settle` seconds at the same
  // rate: right after the warm-up burst both relays show a transient for a second or two, which is
  // reported on its own (afterBurst) instead of inside the steady-state figures.
  const paceFor = async (seconds: number, tag: string) => {
    const start = sink.mark();
    const count = o.rate * seconds;
    sent += (
      await sim.request<'emitted'>({ op: 'rate', account: BURST_ACCOUNT, perSecond: o.rate, seconds, tag })
    ).count;
    const paced = await waitForDeliveries(sink, start, count, 120_000);
    const latencies = paced
      .map(
        (r) => r.at - (JSON.parse(r.body) as { data: { message: { sentAt: number } } }).data.message.sentAt,
      )
      .sort((a, b) => a - b);
    return {
      p50Ms: percentile(latencies, 50),
      p99Ms: percentile(latencies, 99),
      maxMs: latencies[latencies.length - 1] ?? 0,
    };
  };
  say(
    `${relay.name}: ${o.rate} events/s for ${o.settle} s after the warm-up burst, then ${o.seconds} s measured`,
  );
  const afterBurst = o.settle > 0 ? await paceFor(o.settle, `${relay.name}-settle`) : undefined;
  const cpu = sum(relay.pids.map(cpuMsOf));
  const total = o.rate * o.seconds;
  const steady = await paceFor(o.seconds, `${relay.name}-rate`);
  const latency = {
    rate: o.rate,
    events: total,
    ...steady,
    cpuMsPer1k: round(((sum(relay.pids.map(cpuMsOf)) - cpu) / total) * 1000, 1),
    ...(afterBurst ? { afterBurst } : {}),
  };

  say(`${relay.name}: burst of ${o.events} events`);
  from = sink.mark();
  const gcMs = async () =>
    relay.bridge ? (await metric(relay.bridge, 'process_nodejs_gc_duration_seconds_sum')) * 1000 : undefined;
  const gcBefore = await gcMs();
  const aofBefore = await aofOf(processes.redisUrl);
  const before = cpuNow();
  const burst = await sim.request<'emitted'>({
    op: 'burst',
    account: BURST_ACCOUNT,
    count: o.events,
    tag: `${relay.name}-burst`,
  });
  sent += burst.count;
  const got = await waitForDeliveries(sink, from, o.events, 300_000);
  const lastAt = Math.max(...got.map((r) => r.at));
  const seconds = (lastAt - burst.firstAt) / 1000;
  const after = cpuNow();
  const gcAfter = await gcMs();
  const aofAfter = await aofOf(processes.redisUrl);
  const aofRewrites = aofAfter.rewrites - aofBefore.rewrites;
  const per1k = (k: keyof typeof after) => round(((after[k] - before[k]) / o.events) * 1000, 1);
  const throughput = {
    events: o.events,
    seconds: round(seconds, 2),
    eventsPerSecond: Math.round(o.events / seconds),
    peakRssMiB: round(sum(relay.pids.map((pid) => memoryOf(pid).peakMiB)), 1),
    cpuMsPer1kBy: {
      relay: per1k('relay'),
      redis: per1k('redis'),
      broker: per1k('broker'),
      simulator: per1k('simulator'),
      receiver: per1k('receiver'),
    },
    ...(gcBefore !== undefined && gcAfter !== undefined
      ? { gcMsPer1k: round(((gcAfter - gcBefore) / o.events) * 1000, 1) }
      : {}),
    // A rewrite inside the burst shrinks the file: its growth then says nothing.
    aofKiBPer1k:
      aofRewrites === 0 ? round(((aofAfter.bytes - aofBefore.bytes) / 1024 / o.events) * 1000, 1) : -1,
    aofRewrites,
  };
  say(`${relay.name}: ${throughput.eventsPerSecond} events/s`);
  const stored = await sink.check(sent);
  if (stored.stored !== sent)
    say(`${relay.name}: CHECK FAILED: sent ${sent}, the target holds ${stored.stored}`);

  return { throughput, latency, stored };
}

/** RSS of an idle bridge holding `count` live accounts, and how long they took to all be live. */
async function idleMemory(redis: RedisServer, sim: SimProcess, sink: Sink, count: number) {
  const ids = Array.from({ length: count }, (_, i) => `idle-${count}-${i}`);
  const tokens = await sim.tokens(ids);
  const started = Date.now();
  // The target is about one process holding every account.
  const bridge = await startBridge(redis, sim, tokens, sink, undefined, { split: false });
  try {
    await bridge.bridge.waitReady(120_000);
    const liveSeconds = (Date.now() - started) / 1000;
    // Let start-up garbage be collected and timers settle before reading the resident size.
    await new Promise((r) => setTimeout(r, 5_000));
    return {
      accounts: count,
      allLiveSeconds: round(liveSeconds, 2),
      rssMiB: round(memoryOf(bridge.bridge.pid).rssMiB, 1),
    };
  } finally {
    await bridge.stop();
  }
}

async function main(): Promise<void> {
  const o = options();
  if (!hasRedisServer())
    throw new Error('the benchmark needs redis-server on PATH (apt-get install redis-server)');
  mkdirSync(RESULTS, { recursive: true });
  const profileDir = o.profile ? mkdtempSync(join(RESULTS, 'profiles-')) : undefined;
  const redis = await RedisServer.start();
  await setAppendFsync(redis.url, o.appendfsync);
  const sim = await SimProcess.start();
  const sinks = await sinkFactory(o.destination, { redisUrl: redis.url, secret: SECRET });
  say(
    `redis ${redis.url} (AOF, appendfsync ${o.appendfsync}), simulator pid ${sim.pid} at ${sim.url}, ` +
      `destination ${o.destination}`,
  );
  const rounds: Record<RelayName, PhaseResult[]> = { bridge: [], naive: [], traced: [] };
  const spans = o.trace ? await SpanCounter.start() : undefined;
  const idle: Awaited<ReturnType<typeof idleMemory>>[] = [];
  try {
    const tokens = await sim.tokens([BURST_ACCOUNT]);
    for (let round = 0; round < o.rounds; round++) {
      // Alternating the order keeps whatever else the machine is doing from favouring one relay.
      const order: RelayName[] = o.trace ? ['naive', 'bridge', 'traced'] : ['naive', 'bridge'];
      for (const name of round % 2 === 0 ? order : order.toReversed()) {
        await emptyRedis(redis.url);
        const sink = await sinks.create();
        const relay =
          name === 'naive'
            ? await startNaive(sim, tokens, sink)
            : await startBridge(
                redis,
                sim,
                tokens,
                sink,
                profileDir,
                o,
                name === 'traced' ? spans : undefined,
              );
        try {
          await relay.bridge?.waitReady(30_000);
          const processes = { redis: redisPid(redis.port), redisUrl: redis.url, broker: sinks.brokerPids() };
          rounds[name].push(await measure(relay, sim, sink, processes, o));
        } catch (err) {
          // What the bridge said is the first thing to read when a phase times out.
          if (relay.bridge) console.error(relay.bridge.logs.slice(-20).join('\n'));
          throw err;
        } finally {
          await relay.stop();
          await sink.close();
        }
      }
    }
    const sink = await sinks.create();
    try {
      for (const count of o.idle) {
        say(`bridge: idle with ${count} accounts`);
        idle.push(await idleMemory(redis, sim, sink, count));
      }
    } finally {
      await sink.close();
    }
  } finally {
    sim.stop();
    await sinks.close();
    await redis.close();
    await spans?.close();
  }
  const profile = profileDir ? summarizeProfiles(profileDir) : undefined;
  const traced = spans && { result: medianOf(rounds.traced), spans };
  const medians = { bridge: medianOf(rounds.bridge), naive: medianOf(rounds.naive) };
  report(o, sinks, medians, rounds, idle, profile, traced);
}

/** Field-by-field median over rounds (each figure on its own, so one noisy round cannot skew it). */
function medianOf(results: readonly PhaseResult[]): PhaseResult {
  const median = (values: number[]) => {
    const sorted = [...values].sort((a, b) => a - b);
    const mid = Math.floor(sorted.length / 2);
    return sorted.length % 2 ? sorted[mid]! : round((sorted[mid - 1]! + sorted[mid]!) / 2, 1);
  };
  const merge = <T extends object>(parts: T[]): T =>
    Object.fromEntries(
      Object.keys(parts[0]!).map((key) => {
        const values = parts.map((p) => (p as Record<string, unknown>)[key]);
        return [key, typeof values[0] === 'number' ? median(values as number[]) : merge(values as object[])];
      }),
    ) as T;
  return merge([...results]);
}

function report(
  o: ReturnType<typeof options>,
  sinks: SinkFactory,
  r: Record<'bridge' | 'naive', PhaseResult>,
  rounds: Record<RelayName, PhaseResult[]>,
  idle: { accounts: number; allLiveSeconds: number; rssMiB: number }[],
  profile: string | undefined,
  traced: { result: PhaseResult; spans: SpanCounter } | undefined,
): void {
  const ratio = round(r.bridge.throughput.eventsPerSecond / r.naive.throughput.eventsPerSecond, 2);
  // A naive p50 under 1 ms is counted as 1 ms so the ratio stays finite.
  const latencyRatio = round(r.bridge.latency.p50Ms / Math.max(1, r.naive.latency.p50Ms), 2);
  const p99Ratio = round(r.bridge.latency.p99Ms / Math.max(1, r.naive.latency.p99Ms), 2);
  const thousand = idle.find((i) => i.accounts === 1000);
  const target = TARGETS[o.destination];
  const p99 = r.bridge.latency.p99Ms;
  const p99Met =
    target.p99Ms === undefined || o.rate !== 500
      ? undefined
      : target.p99Inclusive
        ? p99 <= target.p99Ms
        : p99 < target.p99Ms;
  const everyRound = [...rounds.bridge, ...rounds.naive, ...rounds.traced];
  const targets = {
    ...(target.throughputRatio === undefined
      ? {}
      : {
          [`throughputAtLeast${target.throughputRatio * 100}PercentOfNaive`]: ratio >= target.throughputRatio,
        }),
    throughputAtLeast80PercentOfNaive: ratio >= target.throughputRatioAim,
    [`p99${target.p99Inclusive ? 'AtMost' : 'Under'}${target.p99Ms}msAt500PerSecond`]: p99Met,
    thousandAccountsUnder400MiB: thousand ? thousand.rssMiB < IDLE_RSS_TARGET_MIB : undefined,
    everyEventStoredOnce: everyRound.every((p) => p.stored.stored === p.stored.sent),
  };
  const all = { ...r, ...(traced && { traced: traced.result }) };
  const rows = (traced ? (['bridge', 'traced', 'naive'] as const) : (['bridge', 'naive'] as const)).map(
    (name) => ({
      relay: `${name === 'traced' ? 'bridge, tracing on' : name}${name !== 'naive' && o.split ? ' (split)' : ''}`,
      'burst events/s': all[name]!.throughput.eventsPerSecond,
      'burst s': all[name]!.throughput.seconds,
      'peak RSS MiB': all[name]!.throughput.peakRssMiB,
      'CPU ms/1k relay': all[name]!.throughput.cpuMsPer1kBy.relay,
      'CPU ms/1k redis': all[name]!.throughput.cpuMsPer1kBy.redis,
      'GC ms/1k': all[name]!.throughput.gcMsPer1k ?? '',
      'AOF KiB/1k': all[name]!.throughput.aofKiBPer1k,
      ...(o.destination === 'nats' || o.destination === 'amqp'
        ? { 'CPU ms/1k broker': all[name]!.throughput.cpuMsPer1kBy.broker }
        : {}),
      [`p50 ms @${o.rate}/s`]: all[name]!.latency.p50Ms,
      [`p99 ms @${o.rate}/s`]: all[name]!.latency.p99Ms,
      [`max ms @${o.rate}/s`]: all[name]!.latency.maxMs,
    }),
  );
  console.log(
    `\ndestination ${o.destination}; ${o.rounds > 1 ? `median of ${o.rounds} rounds; ` : ''}burst of ${o.events} events, ` +
      `${o.rate} events/s for ${o.seconds} s; redis appendfsync ${o.appendfsync}; node ${process.version}; ` +
      `load average at start ${loadAtStart.join(' ')}`,
  );
  console.table(rows);
  if (idle.length > 0)
    console.table(
      idle.map((i) => ({
        accounts: i.accounts,
        'all live after s': i.allLiveSeconds,
        'idle RSS MiB': i.rssMiB,
      })),
    );
  console.log(
    `bridge/naive: throughput ${ratio} (${target.throughputRatio === undefined ? 'no target' : `target >= ${target.throughputRatio}`}, ` +
      `aim ${target.throughputRatioAim}), ` +
      `latency p50 ${latencyRatio}x (${r.bridge.latency.p50Ms} vs ${r.naive.latency.p50Ms} ms), ` +
      `p99 ${p99Ratio}x (${r.bridge.latency.p99Ms} vs ${r.naive.latency.p99Ms} ms)`,
  );
  const after = (name: 'bridge' | 'naive') => r[name].latency.afterBurst;
  if (after('bridge') && after('naive')) {
    console.log(
      `right after the warm-up burst (${o.settle} s at ${o.rate}/s, not in the table): ` +
        `p99 bridge ${after('bridge')!.p99Ms} ms, naive ${after('naive')!.p99Ms} ms; ` +
        `max bridge ${after('bridge')!.maxMs} ms, naive ${after('naive')!.maxMs} ms`,
    );
  }
  if (traced) {
    const sent = sum(rounds.traced.map((p) => p.stored.sent));
    console.log(tracingCost(r.bridge, traced.result, traced.spans, sent));
  }
  if (sinks.brokerNote) console.log(sinks.brokerNote);
  const checks = everyRound.map((p) => `${p.stored.stored}/${p.stored.sent}`);
  console.log(`stored/sent per relay run: ${checks.join(', ')}`);
  console.log(
    `targets: ${Object.entries(targets)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `${k} ${v ? 'MET' : 'NOT MET'}`)
      .join('; ')}`,
  );
  if (profile) console.log(`\n${profile}`);
  const json = {
    at: new Date().toISOString(),
    machine: {
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model,
      node: process.version,
      loadAverageAtStart: loadAtStart,
      loadAverageAtEnd: loadavg().map((l) => round(l, 2)),
    },
    destination: o.destination,
    options: o,
    results: all,
    rounds,
    ...(traced && { spansExported: traced.spans.spans }),
    ratios: { throughput: ratio, p50Latency: latencyRatio, p99Latency: p99Ratio },
    idle,
    targets,
  };
  const file = join(RESULTS, `bench-${json.at.replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, `${JSON.stringify(json, null, 2)}\n`);
  writeFileSync(join(RESULTS, 'latest.json'), `${JSON.stringify(json, null, 2)}\n`);
  console.log(`results: ${file}`);
}

async function setAppendFsync(url: string, policy: string): Promise<void> {
  const client = new Redis(url);
  try {
    await client.config('SET', 'appendfsync', policy);
  } finally {
    client.disconnect();
  }
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

function sum(values: readonly number[]): number {
  return values.reduce((a, b) => a + b, 0);
}

function round(n: number, digits: number): number {
  return Math.round(n * 10 ** digits) / 10 ** digits;
}

const args = process.argv.slice(2);
// `--processes` (bench/sharing.ts) and `--redis` (bench/redis.ts) are runs of their own.
const run = args.some((arg) => arg.startsWith('--processes'))
  ? (await import('./sharing.js')).runSharingBench
  : args.some((arg) => arg === '--redis' || arg.startsWith('--redis='))
    ? () => import('./redis.js').then((m) => m.redisBench())
    : main;
run().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(`bench error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    process.exit(1);
  },
);
