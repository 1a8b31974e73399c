/**
 * `npm run soak -- --minutes M --seed S`: the chaos soak. Real parts as separate processes (private
 * redis-server with AOF, IMKIT simulator, webhook receivers, a private nats-server with a JetStream
 * stream and a private target redis-server for the broker destinations, two ingest replicas on the
 * same accounts, worker processes) under a steady event stream while seeded faults hit every part;
 * then it drains, checks every emitted event against what the receivers verified and the streams
 * stored, and exits non-zero on any loss.
 *
 *   --minutes M     traffic duration (default 1; fractions allowed)
 *   --seed S        fault and traffic seed (default 1); the same seed plans the same faults
 *   --rate R        events per second (default 30)
 *   --workers N     worker processes (default 2)
 *   --keep          keep the run directory (configs, process logs, report.json) even on success
 *   --no-faults     the same traffic with no faults: a baseline for delays
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { runCli } from '../test/support/bridge-process.js';
import { natsServerBinary } from '../test/support/nats-server.js';
import { hasRedisServer, waitFor } from '../test/support/redis.js';
import type { Receipt } from './soak/brokers.js';
import { SoakCluster, type SoakAccount, type SoakBroker, type SoakWebhook } from './soak/cluster.js';
import { FaultInjector, planFaults } from './soak/faults.js';
import { Rng } from './soak/rng.js';
import { Ledger, TrafficGenerator } from './soak/traffic.js';
import {
  judgeDestination,
  percentile,
  readQuarantine,
  webhookReceipts,
  type DestinationVerdict,
} from './soak/verify.js';

const ACCOUNTS: SoakAccount[] = [
  { id: 'soak-a', encoding: 'base64' },
  { id: 'soak-b', encoding: 'base64' },
  { id: 'soak-c', encoding: 'none' },
];
const WEBHOOKS: SoakWebhook[] = [
  { id: 'everything', accounts: ['*'], events: ['*'] },
  { id: 'chats', accounts: ['soak-a', 'soak-b'], events: ['chat message'] },
];
/** Broker destinations, with filters of their own like the webhooks'. */
const BROKERS: SoakBroker[] = [
  { id: 'audit-nats', type: 'nats', accounts: ['*'], events: ['*'] },
  {
    id: 'audit-stream',
    type: 'redis-stream',
    accounts: ['soak-b', 'soak-c'],
    events: ['chat message', 'room', 'lastRead', 'typing', 'messageDeleted'],
  },
];
const DESTINATIONS: (SoakWebhook & { type: 'webhook' | SoakBroker['type'] })[] = [
  ...WEBHOOKS.map((w) => ({ ...w, type: 'webhook' as const })),
  ...BROKERS,
];
const DRAIN_TIMEOUT_MS = 150_000;
const REPLAY_TIMEOUT_MS = 30_000;
const GIVE_UP_WHEN_EMPTY_MS = 20_000;

interface DeadLetterListJson {
  destinations: { destination: string; total: number; entries: { id: string }[] }[];
  quarantine: { total: number };
}

function options() {
  const { values } = parseArgs({
    options: {
      minutes: { type: 'string', default: '1' },
      seed: { type: 'string', default: '1' },
      rate: { type: 'string', default: '30' },
      workers: { type: 'string', default: '2' },
      keep: { type: 'boolean', default: false },
      'no-faults': { type: 'boolean', default: false },
    },
  });
  const minutes = Number(values.minutes);
  const seed = Number(values.seed);
  const rate = Number(values.rate);
  const workers = Number(values.workers);
  if (!(minutes > 0) || !Number.isInteger(seed) || !(rate > 0) || !Number.isInteger(workers) || workers < 1) {
    throw new Error(
      'usage: soak [--minutes M>0] [--seed INT] [--rate R>0] [--workers N>=1] [--keep] [--no-faults]',
    );
  }
  return {
    durationMs: Math.round(minutes * 60_000),
    seed,
    rate,
    workers,
    keep: values.keep,
    faults: !values['no-faults'],
  };
}

const t0 = Date.now();
function say(line: string): void {
  console.log(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(6)}s] ${line}`);
}

async function main(): Promise<number> {
  const opts = options();
  if (!hasRedisServer())
    throw new Error('the soak needs redis-server on PATH (apt-get install redis-server)');
  if (!natsServerBinary())
    throw new Error('the soak needs nats-server (apt-get install nats-server, or NATS_SERVER_BIN)');
  const dir = mkdtempSync(join(tmpdir(), 'imkit-bridge-soak-'));
  const rng = new Rng(opts.seed);
  const planned = planFaults(rng.fork(), {
    startMs: Math.max(3_000, opts.durationMs * 0.1),
    endMs: opts.durationMs * 0.7,
    replicas: 2,
    workers: opts.workers,
    webhooks: WEBHOOKS.map((w) => w.id),
    accounts: ACCOUNTS.map((a) => a.id),
  });
  const plan = opts.faults ? planned : [];
  say(`soak seed ${opts.seed}, ${opts.durationMs / 1000} s at ${opts.rate} events/s, run dir ${dir}`);
  say(
    `planned faults:\n${plan.map((f) => `    +${(f.at / 1000).toFixed(1)}s ${f.kind} on ${f.target} (${f.durationMs} ms${f.abrupt ? ', SIGKILL' : ''})`).join('\n')}`,
  );

  const cluster = await SoakCluster.start({
    accounts: ACCOUNTS,
    webhooks: WEBHOOKS,
    brokers: BROKERS,
    replicas: 2,
    workers: opts.workers,
    dir,
  });
  let ok = false;
  try {
    await waitFor(async () => (await cluster.replicaLive(0)) && (await cluster.replicaLive(1)), {
      timeoutMs: 30_000,
      intervalMs: 100,
      what: 'both ingest replicas live on every account',
    });
    say(
      `cluster up: redis ${cluster.redis.url}, simulator ${cluster.sim.url}, 2 ingest + ${opts.workers} worker processes`,
    );
    const ledger = new Ledger();
    const receiptsOf = (id: string): readonly Receipt[] => {
      const receiver = cluster.receivers.get(id);
      return receiver ? webhookReceipts(receiver) : cluster.collectors.get(id)!.receipts;
    };
    const judgeAll = () =>
      DESTINATIONS.map((d) => judgeDestination(d, ledger.expectedFor(d), receiptsOf(d.id)));
    const traffic = new TrafficGenerator(cluster.sim, ACCOUNTS, rng.fork(), ledger, `s${opts.seed}`);
    const injector = new FaultInjector(cluster, traffic, say);

    const startedAt = Date.now();
    let emitted = 0;
    const pump = setInterval(() => {
      const due = Math.floor(((Date.now() - startedAt) / 1000) * opts.rate);
      for (; emitted < due; emitted++) traffic.next();
    }, 20);
    const progress = setInterval(() => {
      void cluster.refreshBrokers().then(() => {
        const delivered = WEBHOOKS.map(
          (w) => `${w.id} ${cluster.receivers.get(w.id)!.deliveredIds().length}`,
        ).join(', ');
        const stored = BROKERS.map((b) => `${b.id} ${cluster.collectors.get(b.id)!.receipts.length}`);
        say(`emitted ${ledger.emissions}, 2xx so far: ${delivered}; stored so far: ${stored.join(', ')}`);
      });
    }, 10_000);
    const faults = injector.run(plan, startedAt);
    await new Promise((r) => setTimeout(r, opts.durationMs));
    clearInterval(pump);
    injector.stop();
    await faults;
    say(
      `traffic stopped: ${ledger.emissions} emissions, ${ledger.events.size} distinct events, ${ledger.malformed.length} malformed payloads; draining`,
    );

    const drainStarted = Date.now();
    const settled = async () => {
      await cluster.refreshBrokers();
      return judgeAll().every((v) => v.lost.length === 0);
    };
    // Drained: every event accounted for and nothing left in Redis or in ingest memory. Empty queues
    // that stay empty while events are missing mean those events are gone: no point waiting longer.
    let emptySince: number | undefined;
    const outcome = await waitFor(
      async () => {
        const empty = (await cluster.ingestBuffered()) === 0 && (await cluster.pendingJobs()) === 0;
        if (empty && (await settled())) return 'drained';
        emptySince = empty ? (emptySince ?? Date.now()) : undefined;
        return emptySince !== undefined && Date.now() - emptySince > GIVE_UP_WHEN_EMPTY_MS
          ? 'empty'
          : undefined;
      },
      { timeoutMs: DRAIN_TIMEOUT_MS, intervalMs: 500, what: 'queues to drain' },
    ).catch(() => 'timeout' as const);
    const drained = outcome === 'drained';
    clearInterval(progress);
    say(
      drained
        ? `drained in ${((Date.now() - drainStarted) / 1000).toFixed(1)} s`
        : outcome === 'empty'
          ? `queues empty for ${GIVE_UP_WHEN_EMPTY_MS / 1000} s with events still missing`
          : `NOT drained after ${DRAIN_TIMEOUT_MS / 1000} s`,
    );

    await cluster.refreshBrokers();
    const first = judgeAll();
    const list = await dlqList(cluster.cliConfigFile);
    const quarantine = await readQuarantine(cluster.redis.url, cluster.prefix, ledger);
    const deadMatches = first.map((v) => {
      const listed = new Set(
        list.destinations.find((d) => d.destination === v.destination)?.entries.map((e) => e.id) ?? [],
      );
      const wanted = new Set(v.expectedDead);
      return {
        destination: v.destination,
        listed: listed.size,
        exact: listed.size === wanted.size && [...wanted].every((id) => listed.has(id)),
      };
    });

    const deadTotal = first.reduce((n, v) => n + v.expectedDead.length, 0);
    let replayed = 0;
    if (deadTotal > 0) {
      const replay = await runCli(['dlq', 'replay', '--config', cluster.cliConfigFile, '--json']);
      replayed = (JSON.parse(replay.stdout) as { replayed: number }).replayed;
      say(`dlq replay: ${replayed} dead letter(s) re-queued`);
    }
    // Replayed dead letters must now arrive: until they do, their last answer is still the 410.
    const replayedDelivered = async () => {
      await cluster.refreshBrokers();
      return first.every((v) => {
        const got = new Set(
          receiptsOf(v.destination)
            .filter((r) => r.status !== undefined && r.status < 300)
            .map((r) => r.id),
        );
        return v.expectedDead.every((id) => got.has(id));
      });
    };
    const replayOk = await waitFor(replayedDelivered, {
      timeoutMs: REPLAY_TIMEOUT_MS,
      intervalMs: 250,
      what: 'replayed dead letters delivered',
    }).then(
      () => true,
      () => false,
    );
    await cluster.refreshBrokers();
    const final = judgeAll();

    ok = report({
      opts,
      ledger,
      first,
      final,
      deadMatches,
      replayed,
      quarantine: { ...quarantine, listed: list.quarantine.total },
      faults: injector.records.length,
      drained,
      replayOk,
      dir,
      startedAt,
    });
  } finally {
    await cluster.close();
    if (ok && !opts.keep) rmSync(dir, { recursive: true, force: true });
    else say(`run directory kept: ${dir} (configs, process logs, report.json)`);
  }
  return ok ? 0 : 1;
}

async function dlqList(configFile: string): Promise<DeadLetterListJson> {
  const res = await runCli(['dlq', 'list', '--config', configFile, '--json']);
  if (res.code !== 0) throw new Error(`dlq list exited ${res.code}: ${res.stderr}`);
  return JSON.parse(res.stdout) as DeadLetterListJson;
}

function report(r: {
  opts: ReturnType<typeof options>;
  ledger: Ledger;
  first: DestinationVerdict[];
  final: DestinationVerdict[];
  deadMatches: { destination: string; listed: number; exact: boolean }[];
  replayed: number;
  quarantine: { length: number; found: Set<string>; listed: number };
  faults: number;
  drained: boolean;
  replayOk: boolean;
  dir: string;
  startedAt: number;
}): boolean {
  const rows = r.final.map((v, i) => {
    const before = r.first[i]!;
    const delays = [...before.delays].sort((a, b) => a - b);
    return {
      destination: v.destination,
      type: DESTINATIONS[i]!.type,
      sent: v.expected,
      delivered: v.delivered,
      lost: v.lost.length,
      duplicates: v.duplicates,
      sameId: v.idMismatches === 0,
      unverified: v.unverified,
      unexpected: v.unexpected.length,
      deadLettered: r.deadMatches[i]!.listed,
      deadAsExpected: r.deadMatches[i]!.exact,
      p50DelayMs: percentile(delays, 50),
      p99DelayMs: percentile(delays, 99),
      maxDelayMs: delays[delays.length - 1] ?? 0,
    };
  });
  const malformedMissing = r.ledger.malformed.filter((m) => !r.quarantine.found.has(m.marker)).length;
  const lost = rows.reduce((n, row) => n + row.lost, 0);
  const checks = {
    noLoss: lost === 0,
    sameIdOnEveryCopy: rows.every((row) => row.sameId),
    // JetStream (Nats-Msg-Id within the duplicate window) and the redis-stream marker keep repeats out.
    brokersStoredEachEventOnce: rows.every((row) => row.type === 'webhook' || row.duplicates === 0),
    signaturesVerified: rows.every((row) => row.unverified === 0),
    nothingUnexpected: rows.every((row) => row.unexpected === 0),
    deadLettersOnlyFromPermanentFaults: rows.every((row) => row.deadAsExpected),
    malformedQuarantined: malformedMissing === 0 && r.quarantine.listed === r.quarantine.length,
    drained: r.drained,
    deadLettersDeliveredAfterReplay: r.replayOk,
  };
  console.log('');
  console.table(rows);
  console.log(
    `emitted ${r.ledger.emissions} events (${r.ledger.events.size} distinct) of ${r.ledger.byType.size} types; ` +
      `${r.faults} faults injected`,
  );
  for (const row of rows) {
    const idName = { webhook: 'webhook-id', nats: 'Nats-Msg-Id', 'redis-stream': 'id field' }[row.type];
    const copies = row.type === 'webhook' ? 'duplicate deliveries' : 'duplicates stored';
    console.log(
      `${row.destination} (${row.type}): sent ${row.sent}, delivered ${row.delivered}, lost ${row.lost}, ${copies} ${row.duplicates} ` +
        `(${row.sameId ? `every copy carried the same ${idName}` : `SOME COPIES CARRIED ANOTHER ${idName}`}), ` +
        `dead-lettered ${row.deadLettered} (${row.deadAsExpected ? 'exactly the 410 answers' : 'NOT what the faults made permanent'}), ` +
        `delay p50 ${row.p50DelayMs} ms, p99 ${row.p99DelayMs} ms, longest ${row.maxDelayMs} ms`,
    );
  }
  if (r.replayed > 0)
    console.log(
      `dead letters replayed with dlq replay: ${r.replayed}; ${r.replayOk ? 'all delivered afterwards with their original webhook-id' : 'NOT ALL DELIVERED AFTER REPLAY'}`,
    );
  console.log(
    `malformed payloads: ${r.ledger.malformed.length} sent, ${r.ledger.malformed.length - malformedMissing} found in quarantine ` +
      `(${r.quarantine.length} entries: each replica quarantines what it received; dlq list shows ${r.quarantine.listed})`,
  );
  for (const row of r.final) {
    for (const id of row.lost.slice(0, 20)) {
      const e = r.ledger.events.get(id)!;
      const at = new Date(e.emittedAt).toISOString();
      console.log(
        `LOST on ${row.destination}: ${id} ${e.type} of ${e.account}, emitted ${at} (+${((e.emittedAt - r.startedAt) / 1000).toFixed(1)}s) to ${e.sockets} socket(s)`,
      );
    }
    if (row.lost.length > 20) console.log(`LOST on ${row.destination}: ... ${row.lost.length - 20} more`);
  }
  const failed = Object.entries(checks)
    .filter(([, pass]) => !pass)
    .map(([name]) => name);
  const summary = {
    seed: r.opts.seed,
    durationMs: r.opts.durationMs,
    emitted: r.ledger.emissions,
    lost,
    checks,
    destinations: rows,
  };
  writeFileSync(join(r.dir, 'report.json'), `${JSON.stringify(summary, null, 2)}\n`);
  console.log(failed.length === 0 ? 'SOAK PASSED' : `SOAK FAILED: ${failed.join(', ')}`);
  console.log(`soak result: ${JSON.stringify({ lost, passed: failed.length === 0, failed })}`);
  return failed.length === 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`soak error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    process.exit(2);
  },
);
