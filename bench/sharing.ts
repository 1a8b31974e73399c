/**
 * `npm run bench -- --processes N [--accounts A] [--copies C]`: accounts shared among ingest
 * processes (`ingest.copies`). Real bridge processes, a private redis-server, the IMKIT simulator
 * sharded over node:cluster workers (bench/sim-cluster.ts). Two parts, both by default:
 *
 *   hold   A accounts (default 10000) on N `--role ingest` processes with `copies: C` (default 2):
 *          time until every account is held C times, peak RSS per process; then kill -9 of one
 *          process and the time until every account it held is held C times again, the survivors'
 *          peak RSS, and `imkit_bridge_accounts_under_copies` while that happens.
 *   cost   the work sharding removes: the same traffic to --cost-accounts accounts (default 400)
 *          through 1 ingest process (copies all), N processes with copies all, and N processes with
 *          copies 1, each with one `--role worker` delivering to a webhook here. Ingest CPU per
 *          1,000 events summed over the ingest processes (and the worker's, Redis's, the
 *          simulator's apart), at --rate events/s for --seconds, then a burst of --events. A phase
 *          ends when every ingest process has landed its copy of every event it was sent.
 *
 *   --lease L          ingest.lease (default 15s)
 *   --sim-workers W    simulator processes in the hold part (default 2: 20,000 sockets do not fit
 *                      in one process's open-file limit here)
 *   --parts LIST       hold,cost (default both)
 *   --rounds K         the cost part K times, alternating the order of the configurations; medians
 *   --warmup W         before the cost part measures, W messages to every account (default 25): every
 *                      process runs its hot paths often enough to be compiled, so the figures are a
 *                      long-running process's cost per event, not start-up work spread over a few events
 *   --profile          CPU-profile the ingest processes of the cost part from the start of the traffic
 *                      to the end of the burst; a summary per configuration is printed, profiles go
 *                      to bench/results/profiles-*
 *
 * Prints tables, writes JSON to bench/results/sharing-*.json.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { BridgeProcess, writeConfig } from '../test/support/bridge-process.js';
import { RedisServer, hasRedisServer, waitFor } from '../test/support/redis.js';
import { metric, metrics } from './bridge-metrics.js';
import { emptyRedis } from './fresh-redis.js';
import { cpuMsOf, mainThreadCpuMsOf, memoryOf, redisPid } from './process-stats.js';
import { summarizeProfiles } from './profile-summary.js';
import type { ClusterCommand, ClusterReply } from './sim-cluster.js';
import { sinkFactory } from './sinks.js';

const HERE = import.meta.dirname;
const RESULTS = resolve(HERE, 'results');
const SECRET = 'whsec_YmVuY2gtc2VjcmV0LWZvci1pbWtpdC1icmlkZ2UtYmVuY2g=';
const RSS_TARGET_MB = 400;
/** The time to hold a killed process's accounts again: at most lease + 10 s. */
const REHOLD_SLACK_MS = 10_000;
/** The quiet stretch before the traffic of a cost configuration, to measure the ingest's idle CPU. */
const IDLE_MS = 10_000;

function options() {
  const { values } = parseArgs({
    options: {
      accounts: { type: 'string', default: '10000' },
      processes: { type: 'string', default: '4' },
      copies: { type: 'string', default: '2' },
      lease: { type: 'string', default: '15s' },
      'sim-workers': { type: 'string', default: '2' },
      'cost-accounts': { type: 'string', default: '400' },
      rate: { type: 'string', default: '400' },
      seconds: { type: 'string', default: '10' },
      events: { type: 'string', default: '20000' },
      rounds: { type: 'string', default: '1' },
      warmup: { type: 'string', default: '25' },
      parts: { type: 'string', default: 'hold,cost' },
      profile: { type: 'boolean', default: false },
    },
  });
  const o = {
    accounts: Number(values.accounts),
    processes: Number(values.processes),
    copies: Number(values.copies),
    lease: values.lease,
    leaseMs: durationMs(values.lease),
    simWorkers: Number(values['sim-workers']),
    costAccounts: Number(values['cost-accounts']),
    rate: Number(values.rate),
    seconds: Number(values.seconds),
    events: Number(values.events),
    rounds: Number(values.rounds),
    warmup: Number(values.warmup),
    parts: new Set(values.parts.split(',')),
    profile: values.profile,
  };
  const counts = [o.accounts, o.processes, o.copies, o.simWorkers, o.costAccounts, o.rate, o.seconds];
  if (
    ![...counts, o.events, o.rounds, o.warmup].every((n) => Number.isInteger(n) && n > 0) ||
    o.copies > o.processes
  )
    throw new Error(
      'usage: bench --processes N [--accounts A] [--copies C <= N] [--lease 15s] [--sim-workers W] [--parts hold,cost] [--rounds K] [--warmup W]',
    );
  return o;
}
type Options = ReturnType<typeof options>;

const t0 = Date.now();
function say(line: string): void {
  console.log(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(6)}s] ${line}`);
}

/** bench/sim-cluster.ts as a child process, one command at a time over IPC. */
class SimCluster {
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly child: ChildProcess,
    readonly url: string,
    readonly pids: readonly number[],
  ) {}

  static async start(workers: number): Promise<SimCluster> {
    const child = fork(join(HERE, 'sim-cluster.ts'), [], {
      execArgv: ['--import', 'tsx'],
      env: { ...process.env, SIM_WORKERS: String(workers) },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const ready = await new Promise<ClusterReply>((r) => child.once('message', (m) => r(m as ClusterReply)));
    if (ready.op !== 'ready') throw new Error('simulator cluster did not start');
    return new SimCluster(child, ready.url, [child.pid!, ...ready.workerPids]);
  }

  request<T extends ClusterReply['op']>(command: ClusterCommand): Promise<Extract<ClusterReply, { op: T }>> {
    const next = this.queue.then(
      () =>
        new Promise<Extract<ClusterReply, { op: T }>>((r) => {
          this.child.once('message', (m) => r(m as Extract<ClusterReply, { op: T }>));
          this.child.send(command);
        }),
    );
    this.queue = next.catch(() => undefined);
    return next;
  }

  async tokens(accounts: string[]): Promise<Record<string, string>> {
    return (await this.request<'tokens'>({ op: 'tokens', accounts })).tokens;
  }

  async counts(): Promise<Record<string, number>> {
    return (await this.request<'counts'>({ op: 'counts' })).counts;
  }

  stop(): void {
    this.child.disconnect();
  }
}

/** `count` bridge processes started at once; if one fails, the others are killed too. */
async function startAll(
  file: string,
  count: number,
  role: 'ingest' | 'worker',
  env: NodeJS.ProcessEnv = {},
): Promise<BridgeProcess[]> {
  const started = await Promise.allSettled(
    Array.from({ length: count }, () => BridgeProcess.start(file, { role, env, startTimeoutMs: 5 * 60_000 })),
  );
  const bridges = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const failed = started.find((s) => s.status === 'rejected');
  if (failed) {
    await Promise.all(bridges.map((b) => b.kill9()));
    throw failed.reason;
  }
  return bridges;
}

function baseConfig(redis: RedisServer, prefix: string, sim: SimCluster, tokens: Record<string, string>) {
  return {
    redis: { url: redis.url, prefix },
    server: { host: '127.0.0.1', port: 0 },
    // The simulator's client key: REST catch-up (a takeover's) needs it.
    imkit: { url: sim.url, clientKey: 'sim-client-key' },
    accounts: Object.entries(tokens).map(([id, token]) => ({ id, token })),
    log: { level: 'info' },
  };
}

async function heapUsedMiB(bridge: BridgeProcess): Promise<number> {
  return round((await metric(bridge, 'process_nodejs_heap_size_used_bytes')) / 2 ** 20, 1);
}

async function hold(redis: RedisServer, o: Options) {
  const sim = await SimCluster.start(o.simWorkers);
  const bridges: BridgeProcess[] = [];
  try {
    const ids = Array.from({ length: o.accounts }, (_, i) => `acct-${String(i).padStart(5, '0')}`);
    const tokens = await sim.tokens(ids);
    const config = {
      ...baseConfig(redis, `hold${Date.now().toString(36)}`, sim, tokens),
      ingest: { copies: o.copies, lease: o.lease },
      shutdownTimeout: '30s',
    };
    const file = writeConfig(config);
    say(
      `hold: ${o.accounts} accounts, ${o.processes} ingest processes, copies ${o.copies}, lease ${o.lease}`,
    );
    const started = Date.now();
    bridges.push(...(await startAll(file, o.processes, 'ingest')));
    let atLeast: number | undefined;
    const exactly = await waitFor(
      async () => {
        const counts = await sim.counts();
        const held = ids.filter((id) => (counts[id] ?? 0) >= o.copies).length;
        if (held === ids.length) atLeast ??= Date.now() - started;
        return ids.every((id) => counts[id] === o.copies) ? Date.now() - started : undefined;
      },
      { timeoutMs: 15 * 60_000, intervalMs: 1_000, what: `every account held ${o.copies} times` },
    );
    say(
      `hold: every account held ${o.copies}+ times after ${atLeast} ms, exactly ${o.copies} after ${exactly} ms`,
    );
    const peakAtHold = bridges.map((b) => round(memoryOf(b.pid).peakMiB, 1));
    const rssAtHold = bridges.map((b) => round(memoryOf(b.pid).rssMiB, 1));
    // RSS follows the V8 heap's size, which a CPU-starved process lets grow well past what it uses.
    const heapUsedAtHold = await Promise.all(bridges.map((b) => heapUsedMiB(b)));

    const [victim, ...survivors] = bridges as [BridgeProcess, ...BridgeProcess[]];
    const status = JSON.parse((await victim.get('/status')).body) as {
      ingest: { sharing: { held: string[] } };
    };
    const victimAccounts = status.ingest.sharing.held;
    say(`kill -9 of a process holding ${victimAccounts.length} accounts`);
    const killedAt = Date.now();
    await victim.kill9();
    let underPeak = 0;
    let lastUnderSample = 0;
    const reheld = await waitFor(
      async () => {
        if (Date.now() - lastUnderSample >= 1_000) {
          lastUnderSample = Date.now();
          const under = await Promise.all(survivors.map((b) => metric(b, 'accounts_under_copies')));
          underPeak = Math.max(
            underPeak,
            under.reduce((a, b) => a + b, 0),
          );
        }
        const counts = await sim.counts();
        return victimAccounts.every((id) => (counts[id] ?? 0) >= o.copies)
          ? Date.now() - killedAt
          : undefined;
      },
      {
        timeoutMs: o.leaseMs + 5 * 60_000,
        intervalMs: 250,
        what: "the killed process's accounts held again",
      },
    );
    say(`kill: every account of the killed process held ${o.copies} times again after ${reheld} ms`);
    // Readiness of the survivors, then their memory after the takeover and the settled gauge.
    await Promise.all(survivors.map((b) => b.waitReady(5 * 60_000)));
    await waitFor(
      async () =>
        (await Promise.all(survivors.map((b) => metric(b, 'accounts_under_copies')))).every((v) => v === 0),
      { timeoutMs: 60_000, intervalMs: 500, what: 'no account under copies' },
    );
    const takeovers = await Promise.all(survivors.map((b) => metric(b, 'takeovers_total')));
    const restMax = (await sim.request<'stats'>({ op: 'stats' })).restMax;
    return {
      accounts: o.accounts,
      processes: o.processes,
      copies: o.copies,
      lease: o.lease,
      simWorkers: o.simWorkers,
      imkitSockets: o.accounts * o.copies,
      heldAtLeastCopiesMs: atLeast,
      heldExactlyCopiesMs: exactly,
      peakRssMiBAtHold: peakAtHold,
      rssMiBAtHold: rssAtHold,
      killedHeld: victimAccounts.length,
      reheldMs: reheld,
      reheldTargetMs: o.leaseMs + REHOLD_SLACK_MS,
      survivorsPeakRssMiB: survivors.map((b) => round(memoryOf(b.pid).peakMiB, 1)),
      survivorsRssMiB: survivors.map((b) => round(memoryOf(b.pid).rssMiB, 1)),
      heapUsedMiBAtHold: heapUsedAtHold,
      survivorsHeapUsedMiB: await Promise.all(survivors.map((b) => heapUsedMiB(b))),
      takeovers: takeovers.reduce((a, b) => a + b, 0),
      underCopiesPeak: underPeak,
      restConcurrentMaxPerSimWorker: restMax,
    };
  } finally {
    await Promise.all(bridges.map((b) => b.kill9()));
    sim.stop();
  }
}

interface CostConfig {
  name: string;
  processes: number;
  copies: 'all' | 1;
}

interface CostResult {
  config: string;
  imkitSockets: number;
  rate: {
    events: number;
    ingestCpuMsPer1k: number;
    /** Of that, the JavaScript threads': the rest is V8's and libuv's helper threads. */
    ingestMainThreadMsPer1k: number;
    ingestNetOfIdleMsPer1k: number;
    workerCpuMsPer1k: number;
    redisCpuMsPer1k: number;
    simCpuMsPer1k: number;
  };
  burst: {
    events: number;
    seconds: number;
    eventsPerSecond: number;
    ingestCpuMsPer1k: number;
    /** Of that, the JavaScript threads': the rest is V8's and libuv's helper threads. */
    ingestMainThreadMsPer1k: number;
    ingestNetOfIdleMsPer1k: number;
    workerCpuMsPer1k: number;
    redisCpuMsPer1k: number;
  };
  /** Ingest CPU of all ingest processes with no traffic, ms per second. */
  ingestIdleCpuMsPerSecond: number;
  stored: { sent: number; stored: number };
  loadAverage: number[];
  /** With --profile: where the ingest processes spent their time during the traffic. */
  profile?: string;
}

let costRuns = 0;

async function cost(redis: RedisServer, sim: SimCluster, c: CostConfig, o: Options): Promise<CostResult> {
  const profileDir = o.profile ? mkdtempSync(join(RESULTS, 'profiles-')) : undefined;
  // Accounts of their own per configuration: rooms the simulator still holds messages of from an
  // earlier configuration would be caught up over REST at start (a fresh prefix has no checkpoint)
  // and charged to this one.
  const run = (costRuns++).toString(36);
  const ids = Array.from({ length: o.costAccounts }, (_, i) => `cost${run}-${String(i).padStart(4, '0')}`);
  const tokens = await sim.tokens(ids);
  const sinks = await sinkFactory('webhook', { redisUrl: redis.url, secret: SECRET });
  const sink = await sinks.create();
  const config = {
    ...baseConfig(redis, `cost${Date.now().toString(36)}`, sim, tokens),
    ...sink.bridgeConfig(undefined),
    ingest: { copies: c.copies, lease: o.lease },
  };
  const file = writeConfig(config);
  const bridges: BridgeProcess[] = [];
  try {
    const [worker] = await startAll(file, 1, 'worker');
    bridges.push(worker!);
    const ingest = await startAll(
      file,
      c.processes,
      'ingest',
      profileDir
        ? {
            NODE_OPTIONS: `--import ${join(HERE, 'cpu-profile-hook.mjs')}`,
            BENCH_CPU_PROF_DIR: profileDir,
            BENCH_CPU_PROF_ON_SIGNAL: '1',
          }
        : {},
    );
    bridges.push(...ingest);
    const sockets = c.copies === 'all' ? c.processes : c.copies;
    await waitFor(
      async () => {
        const counts = await sim.counts();
        return ids.every((id) => counts[id] === sockets);
      },
      { timeoutMs: 120_000, intervalMs: 500, what: `every account on ${sockets} socket(s)` },
    );
    await Promise.all(ingest.map((b) => b.waitReady(60_000)));
    const cpu = () => ({
      ingest: sum(ingest.map((b) => cpuMsOf(b.pid))),
      ingestMain: sum(ingest.map((b) => mainThreadCpuMsOf(b.pid))),
      worker: cpuMsOf(worker!.pid),
      redis: cpuMsOf(redisPid(redis.port) ?? 0),
      sim: sum(sim.pids.map(cpuMsOf)),
    });
    const delivered = (from: number, count: number) =>
      waitFor(() => (sink.since(from).length >= count ? sink.since(from) : undefined), {
        timeoutMs: 300_000,
        intervalMs: 20,
        what: `${count} deliveries`,
      });
    /**
     * Until every ingest process has received and landed its copy of everything sent so far. The sink
     * counts an event at its first delivery; with `copies: all` the other processes may still be
     * landing their copies then, and that work belongs to the phase that sent them (before this
     * wait it was counted as the next phase's idle CPU).
     */
    const landed = (total: number) =>
      waitFor(
        async () => {
          const read = await Promise.all(
            ingest.map((b) => metrics(b, ['events_received_total', 'ingest_buffer_events'])),
          );
          const received = sum(read.map(([r]) => r!));
          const buffered = sum(read.map(([, b]) => b!));
          return received >= total * sockets && buffered === 0;
        },
        { timeoutMs: 300_000, intervalMs: 250, what: `every ingest copy of ${total} events landed` },
      );
    let sent = 0;
    // Warm-up (JIT, pools, scripts): with a single message per account, as before, each of four
    // processes compiled its hot paths during the measured traffic, and that start-up work counted
    // as a cost per event four times over.
    let from = sink.mark();
    const warmup = await sim.request<'emitted'>({
      op: 'burst',
      accounts: ids,
      count: ids.length * o.warmup,
      tag: 'warmup',
    });
    sent += warmup.count;
    await delivered(from, warmup.count);
    await landed(sent);

    // What the ingest processes spend with no traffic (pings, membership ticks, checkpoint writes): a
    // cost per process and second, which sharing does not remove, apart from the cost per event.
    say(`cost ${c.name}: idle for ${IDLE_MS / 1000} s`);
    const idleStart = cpu();
    const idleFrom = Date.now();
    await new Promise((r) => setTimeout(r, IDLE_MS));
    const idleMsPerSecond = ((cpu().ingest - idleStart.ingest) / (Date.now() - idleFrom)) * 1000;

    for (const b of profileDir ? ingest : []) process.kill(b.pid, 'SIGUSR2');
    say(`cost ${c.name}: ${o.rate} events/s for ${o.seconds} s over ${ids.length} accounts`);
    from = sink.mark();
    let before = cpu();
    let startedAt = Date.now();
    const paced = await sim.request<'emitted'>({
      op: 'spread',
      accounts: ids,
      perSecond: o.rate,
      seconds: o.seconds,
      tag: 'rate',
    });
    sent += paced.count;
    await delivered(from, paced.count);
    await landed(sent);
    let after = cpu();
    const per1k = (k: keyof typeof after, events: number) =>
      round(((after[k] - before[k]) / events) * 1000, 1);
    /** Ingest CPU per 1k events less the idle cost of the same time. */
    const netPer1k = (events: number) =>
      round(
        ((after.ingest - before.ingest - (idleMsPerSecond * (Date.now() - startedAt)) / 1000) / events) *
          1000,
        1,
      );
    const rate = {
      events: paced.count,
      ingestCpuMsPer1k: per1k('ingest', paced.count),
      ingestMainThreadMsPer1k: per1k('ingestMain', paced.count),
      ingestNetOfIdleMsPer1k: netPer1k(paced.count),
      workerCpuMsPer1k: per1k('worker', paced.count),
      redisCpuMsPer1k: per1k('redis', paced.count),
      simCpuMsPer1k: per1k('sim', paced.count),
    };

    say(`cost ${c.name}: burst of ${o.events} events over ${ids.length} accounts`);
    from = sink.mark();
    before = cpu();
    startedAt = Date.now();
    const burst = await sim.request<'emitted'>({ op: 'burst', accounts: ids, count: o.events, tag: 'burst' });
    sent += burst.count;
    const got = await delivered(from, burst.count);
    await landed(sent);
    after = cpu();
    const seconds = (Math.max(...got.map((r) => r.at)) - burst.firstAt) / 1000;
    const stored = await sink.check(sent);
    const result: CostResult = {
      config: c.name,
      imkitSockets: sockets * ids.length,
      rate,
      burst: {
        events: burst.count,
        seconds: round(seconds, 2),
        eventsPerSecond: Math.round(burst.count / seconds),
        ingestCpuMsPer1k: per1k('ingest', burst.count),
        ingestMainThreadMsPer1k: per1k('ingestMain', burst.count),
        ingestNetOfIdleMsPer1k: netPer1k(burst.count),
        workerCpuMsPer1k: per1k('worker', burst.count),
        redisCpuMsPer1k: per1k('redis', burst.count),
      },
      ingestIdleCpuMsPerSecond: round(idleMsPerSecond, 1),
      stored: { sent, stored: stored.stored },
      loadAverage: loadavg().map((l) => round(l, 2)),
    };
    say(
      `cost ${c.name}: ingest ${rate.ingestCpuMsPer1k} ms/1k at ${o.rate}/s, ${result.burst.ingestCpuMsPer1k} ms/1k ` +
        `in the burst, ${result.burst.eventsPerSecond} events/s`,
    );
    if (profileDir) {
      // A profile is written at a clean exit only.
      await Promise.all(ingest.map((b) => b.stop('SIGTERM')));
      result.profile = summarizeProfiles(profileDir);
      say(`cost ${c.name}: ${result.profile}`);
    }
    return result;
  } finally {
    await Promise.all(bridges.map((b) => b.kill9()));
    await sink.close();
    await sinks.close();
  }
}

export async function runSharingBench(): Promise<void> {
  const o = options();
  if (!hasRedisServer()) throw new Error('the benchmark needs redis-server on PATH');
  mkdirSync(RESULTS, { recursive: true });
  const loadAtStart = loadavg().map((l) => round(l, 2));
  const redis = await RedisServer.start();
  let held: Awaited<ReturnType<typeof hold>> | undefined;
  const rounds: CostResult[][] = [];
  const configs: CostConfig[] = [
    { name: '1 process, copies all', processes: 1, copies: 'all' },
    { name: `${o.processes} processes, copies all`, processes: o.processes, copies: 'all' },
    { name: `${o.processes} processes, copies 1`, processes: o.processes, copies: 1 },
  ];
  try {
    if (o.parts.has('hold')) held = await hold(redis, o);
    if (o.parts.has('cost')) {
      // One simulator process: with a few hundred accounts the sockets fit, and REST sees every message.
      const sim = await SimCluster.start(1);
      try {
        for (let r = 0; r < o.rounds; r++) {
          const order = r % 2 === 0 ? configs : [...configs].reverse();
          const results: CostResult[] = [];
          for (const c of order) {
            await emptyRedis(redis.url);
            results.push(await cost(redis, sim, c, o));
          }
          rounds.push(configs.map((c) => results.find((x) => x.config === c.name)!));
        }
      } finally {
        sim.stop();
      }
    }
  } finally {
    await redis.close();
  }
  report(o, loadAtStart, held, rounds);
}

function report(
  o: Options,
  loadAtStart: number[],
  held: Awaited<ReturnType<typeof hold>> | undefined,
  rounds: CostResult[][],
): void {
  console.log(
    `\nload average at start ${loadAtStart.join(' ')}, at end ${loadavg()
      .map((l) => round(l, 2))
      .join(' ')}`,
  );
  if (held) {
    console.table([
      {
        accounts: held.accounts,
        processes: held.processes,
        copies: held.copies,
        'IMKIT sockets': held.imkitSockets,
        'held >= copies s': round((held.heldAtLeastCopiesMs ?? 0) / 1000, 1),
        'held = copies s': round(held.heldExactlyCopiesMs / 1000, 1),
        'peak RSS MiB (each)': held.peakRssMiBAtHold.join(' / '),
        'killed held': held.killedHeld,
        'held again s': round(held.reheldMs / 1000, 1),
        'survivors peak RSS MiB': held.survivorsPeakRssMiB.join(' / '),
      },
    ]);
    console.log(
      `heap used MiB at hold ${held.heapUsedMiBAtHold.join(' / ')}, survivors after the takeover ` +
        `${held.survivorsHeapUsedMiB.join(' / ')}; RSS at hold ${held.rssMiBAtHold.join(' / ')}, ` +
        `survivors ${held.survivorsRssMiB.join(' / ')}`,
    );
    const peak = Math.max(...held.peakRssMiBAtHold, ...held.survivorsPeakRssMiB);
    console.log(
      `targets: peak RSS <= ${RSS_TARGET_MB} MB ${peak * 1.048576 <= RSS_TARGET_MB ? 'MET' : 'NOT MET'} (${peak} MiB); ` +
        `held again <= lease + 10 s ${held.reheldMs <= held.reheldTargetMs ? 'MET' : 'NOT MET'} ` +
        `(${held.reheldMs} ms, lease ${o.lease}); accounts_under_copies peaked at ${held.underCopiesPeak}; ` +
        `takeovers ${held.takeovers}; concurrent REST calls per simulator worker at most ${held.restConcurrentMaxPerSimWorker}`,
    );
  }
  const median = rounds.length > 0 ? medianRounds(rounds) : [];
  if (median.length > 0) {
    console.table(
      median.map((r) => ({
        config: r.config,
        'IMKIT sockets': r.imkitSockets,
        [`ingest CPU ms/1k @${o.rate}/s`]: r.rate.ingestCpuMsPer1k,
        [`of it JS thread @${o.rate}/s`]: r.rate.ingestMainThreadMsPer1k,
        'ingest CPU ms/1k burst': r.burst.ingestCpuMsPer1k,
        'of it JS thread burst': r.burst.ingestMainThreadMsPer1k,
        'ingest idle CPU ms/s': r.ingestIdleCpuMsPerSecond,
        'ingest ms/1k burst net of idle': r.burst.ingestNetOfIdleMsPer1k,
        'worker CPU ms/1k burst': r.burst.workerCpuMsPer1k,
        'redis CPU ms/1k burst': r.burst.redisCpuMsPer1k,
        'burst events/s': r.burst.eventsPerSecond,
      })),
    );
    const [one, all, shared] = median as [CostResult, CostResult, CostResult];
    const net = (r: CostResult) =>
      round(r.burst.ingestNetOfIdleMsPer1k / one.burst.ingestNetOfIdleMsPer1k, 2);
    console.log(`net of idle, in the burst: copies 1 ${net(shared)}x, copies all ${net(all)}x one process's`);
    const ratio = (r: CostResult, k: 'rate' | 'burst') =>
      round(r[k].ingestCpuMsPer1k / one[k].ingestCpuMsPer1k, 2);
    console.log(
      `ingest CPU against one process: copies 1 ${ratio(shared, 'rate')}x at ${o.rate}/s, ${ratio(shared, 'burst')}x in the burst ` +
        `(target <= 1.3: ${ratio(shared, 'rate') <= 1.3 && ratio(shared, 'burst') <= 1.3 ? 'MET' : 'NOT MET'}); ` +
        `copies all ${ratio(all, 'rate')}x / ${ratio(all, 'burst')}x`,
    );
    console.log(
      `stored/sent: ${rounds
        .flat()
        .map((r) => `${r.stored.stored}/${r.stored.sent}`)
        .join(', ')}`,
    );
  }
  const json = {
    at: new Date().toISOString(),
    machine: {
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model,
      node: process.version,
      loadAverageAtStart: loadAtStart,
      loadAverageAtEnd: loadavg().map((l) => round(l, 2)),
    },
    options: { ...o, parts: [...o.parts] },
    hold: held,
    cost: median,
    rounds,
  };
  const file = join(RESULTS, `sharing-${json.at.replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, `${JSON.stringify(json, null, 2)}\n`);
  console.log(`results: ${file}`);
}

/** Per configuration, the field-by-field median over rounds. */
function medianRounds(rounds: CostResult[][]): CostResult[] {
  const median = (values: number[]) => {
    const sorted = [...values].sort((a, b) => a - b);
    const mid = Math.floor(sorted.length / 2);
    return sorted.length % 2 ? sorted[mid]! : round((sorted[mid - 1]! + sorted[mid]!) / 2, 1);
  };
  const merge = (parts: unknown[]): unknown => {
    const first = parts[0];
    if (typeof first === 'number') return median(parts as number[]);
    if (first === null || typeof first !== 'object' || Array.isArray(first)) return first;
    return Object.fromEntries(
      Object.keys(first).map((key) => [key, merge(parts.map((p) => (p as Record<string, unknown>)[key]))]),
    );
  };
  return rounds[0]!.map((_, i) => merge(rounds.map((r) => r[i])) as CostResult);
}

function durationMs(text: string): number {
  const match = /^(\d+)(ms|s|m)?$/.exec(text);
  if (!match) throw new Error(`--lease takes a duration such as 15s (got ${text})`);
  return Number(match[1]) * (match[2] === 'm' ? 60_000 : match[2] === 'ms' ? 1 : 1_000);
}

function sum(values: readonly number[]): number {
  return values.reduce((a, b) => a + b, 0);
}

function round(n: number, digits: number): number {
  return Math.round(n * 10 ** digits) / 10 ** digits;
}
