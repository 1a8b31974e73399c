import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { ImkitSimulator } from '../../test/sim/imkit-simulator.js';
import { BridgeProcess, writeConfig, type Role } from '../../test/support/bridge-process.js';
import { NatsServer } from '../../test/support/nats-server.js';
import { WebhookReceiver } from '../../test/support/receiver.js';
import { RedisServer } from '../../test/support/redis.js';
import { TcpProxy } from '../../test/support/tcp-proxy.js';
import { NatsStreamCollector, RedisStreamCollector, type BrokerCollector } from './brokers.js';

export const SOAK_SECRET = 'whsec_c29hay1zZWNyZXQtZm9yLWlta2l0LWJyaWRnZS1zb2Fr';
/** The bridges' `repeatWindow`: the verifier derives non-chat event ids with it. */
export const SOAK_REPEAT_WINDOW_MS = 5_000;
/** The bridges' `dedupWindow`; the NATS stream's duplicate window matches it. */
const SOAK_DEDUP_WINDOW_MS = 2 * 3_600_000;
const NATS_STREAM = 'SOAK';
const NATS_SUBJECT = 'soak.{account}.{type}';
const REDIS_STREAM = 'soak:{account}';
/** Long enough in total (about 45 s) to outlast every transient fault the soak injects. */
const RETRY = {
  schedule: ['250ms', '500ms', '1s', '2s', '3s', '4s', '5s', '5s', '5s', '5s', '5s', '5s'],
  jitter: 0.2,
};
const BREAKER = { failures: 20, cooldown: '1s' };

export interface SoakAccount {
  readonly id: string;
  readonly encoding: 'none' | 'base64';
}

export interface SoakWebhook {
  readonly id: string;
  readonly accounts: readonly string[];
  readonly events: readonly string[];
}

/** A broker destination: a private nats-server with a stream, or a private target redis-server. */
export interface SoakBroker extends SoakWebhook {
  readonly type: 'nats' | 'redis-stream';
}

export interface ClusterOptions {
  readonly accounts: readonly SoakAccount[];
  readonly webhooks: readonly SoakWebhook[];
  readonly brokers: readonly SoakBroker[];
  /** Ingest processes, all holding every account. */
  readonly replicas: number;
  readonly workers: number;
  /** Where configs, token files and process logs go. */
  readonly dir: string;
}

/** One role process slot: the running process (if any) and its config. */
interface Slot {
  readonly name: string;
  readonly role: Role;
  readonly configFile: string;
  process: BridgeProcess | undefined;
  /** Logs of earlier incarnations (killed and restarted), kept for the post-mortem. */
  readonly pastLogs: string[];
}

/**
 * Every real part of a soak run, on loopback: a private redis-server (AOF, fsync always), the IMKIT
 * simulator, one signature-verifying receiver per webhook, the brokers of the broker destinations (a
 * private nats-server with JetStream, a private target redis-server), and bridge processes (ingest
 * replicas on the same accounts, each through its own fault proxy, plus worker processes), with the
 * controls the fault injector needs.
 */
export class SoakCluster {
  readonly receivers = new Map<string, WebhookReceiver>();
  /** What each broker destination stored, by destination id. */
  readonly collectors = new Map<string, BrokerCollector>();
  nats: NatsServer | undefined;
  streamRedis: RedisServer | undefined;
  private readonly ingestSlots: Slot[] = [];
  private readonly workerSlots: Slot[] = [];
  /** tokens[replica][account] */
  private readonly tokens: Map<string, string>[] = [];
  private closed = false;

  private constructor(
    readonly options: ClusterOptions,
    readonly redis: RedisServer,
    readonly sim: ImkitSimulator,
    readonly proxies: readonly TcpProxy[],
    readonly prefix: string,
  ) {}

  static async start(options: ClusterOptions): Promise<SoakCluster> {
    const [redis, sim] = await Promise.all([
      RedisServer.start(),
      // Fast app-level pings so the bridge's heartbeat watchdog can be short.
      ImkitSimulator.start({
        pingIntervalMs: 1_000,
        enginePingIntervalMs: 5_000,
        enginePingTimeoutMs: 5_000,
      }),
    ]);
    const proxies = await Promise.all(
      Array.from({ length: options.replicas }, () => TcpProxy.start(sim.port)),
    );
    const cluster = new SoakCluster(options, redis, sim, proxies, `soak${process.pid}`);
    try {
      for (const w of options.webhooks) {
        cluster.receivers.set(w.id, await WebhookReceiver.start({ secret: SOAK_SECRET }));
      }
      await cluster.startBrokers();
      cluster.prepare();
      await Promise.all([
        ...cluster.ingestSlots.map((_, i) => cluster.startIngest(i)),
        ...cluster.workerSlots.map((_, i) => cluster.startWorker(i)),
      ]);
    } catch (err) {
      await cluster.close();
      throw err;
    }
    return cluster;
  }

  /** Config for `dlq list` / `dlq replay` and other one-shot CLI calls. */
  get cliConfigFile(): string {
    return this.workerSlots[0]?.configFile ?? this.ingestSlots[0]!.configFile;
  }

  ingest(i: number): BridgeProcess | undefined {
    return this.ingestSlots[i]?.process;
  }

  worker(i: number): BridgeProcess | undefined {
    return this.workerSlots[i]?.process;
  }

  get replicaCount(): number {
    return this.ingestSlots.length;
  }

  get workerCount(): number {
    return this.workerSlots.length;
  }

  async startIngest(i: number): Promise<void> {
    await this.startSlot(this.ingestSlots[i]!);
  }

  async startWorker(i: number): Promise<void> {
    await this.startSlot(this.workerSlots[i]!);
  }

  async killIngest(i: number): Promise<void> {
    await this.killSlot(this.ingestSlots[i]!);
  }

  async killWorker(i: number): Promise<void> {
    await this.killSlot(this.workerSlots[i]!);
  }

  /** IMKIT expires the token replica `i` holds for `account`; its next auth2 for it fails. */
  expireToken(i: number, account: string): void {
    this.sim.expireToken(this.tokens[i]!.get(account)!);
  }

  /** A new token in the replica's token file, as a rotated Kubernetes Secret would appear. */
  rotateToken(i: number, account: string): void {
    const token = this.sim.issueToken(account);
    this.tokens[i]!.set(account, token);
    writeFileSync(this.tokenFile(i, account), `${token}\n`);
  }

  /**
   * Whether replica `i` has every account authenticated, and authenticated after `after` (epoch ms):
   * a frozen connection still looks live until the watchdog notices, so recovery means a new session.
   */
  async replicaLive(i: number, after = 0): Promise<boolean> {
    const bridge = this.ingest(i);
    if (!bridge || bridge.exitCode !== undefined) return false;
    try {
      const res = await bridge.get('/status');
      if (res.status !== 200) return false;
      const status = JSON.parse(res.body) as { accounts: { state: string; since: string }[] };
      return (
        status.accounts.length === this.options.accounts.length &&
        status.accounts.every((a) => a.state === 'live' && Date.parse(a.since) >= after)
      );
    } catch {
      return false;
    }
  }

  /** Jobs not yet settled, per destination queue, read through any live process's /status. */
  async pendingJobs(): Promise<number | undefined> {
    for (const slot of [...this.workerSlots, ...this.ingestSlots]) {
      const bridge = slot.process;
      if (!bridge || bridge.exitCode !== undefined) continue;
      try {
        const res = await bridge.get('/status');
        const status = JSON.parse(res.body) as {
          redis: { state: string };
          ingest?: { buffered: number };
          destinations: { waiting?: number; active?: number; delayed?: number }[];
        };
        if (status.redis.state !== 'ok') continue;
        return status.destinations.reduce(
          (n, w) => n + (w.waiting ?? 0) + (w.active ?? 0) + (w.delayed ?? 0),
          0,
        );
      } catch {
        continue;
      }
    }
    return undefined;
  }

  /** Events held in ingest memory, not yet in Redis, over every running replica. */
  async ingestBuffered(): Promise<number> {
    let total = 0;
    for (let i = 0; i < this.ingestSlots.length; i++) total += (await this.bufferedIn(i)) ?? 0;
    return total;
  }

  /** Events replica `i` holds in memory, not yet in Redis; undefined when it is not running. */
  async bufferedIn(i: number): Promise<number | undefined> {
    const bridge = this.ingest(i);
    if (!bridge || bridge.exitCode !== undefined) return undefined;
    const res = await bridge.get('/status');
    return (JSON.parse(res.body) as { ingest?: { buffered: number } }).ingest?.buffered ?? 0;
  }

  /** Stops everything; writes each process's log into the run directory. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(
      [...this.ingestSlots, ...this.workerSlots].map(async (slot) => {
        await slot.process?.stop('SIGTERM', 10_000);
        this.saveLogs(slot);
      }),
    );
    await Promise.all([
      ...this.proxies.map((p) => p.close()),
      ...[...this.receivers.values()].map((r) => r.close()),
      ...[...this.collectors.values()].map((c) => c.close()),
      this.sim.close(),
    ]);
    await Promise.all([this.redis.close(), this.nats?.close(), this.streamRedis?.close()]);
  }

  /** Reads what every broker destination stored since the last call. */
  async refreshBrokers(): Promise<void> {
    await Promise.all([...this.collectors.values()].map((c) => c.refresh()));
  }

  /** Starts the brokers the broker destinations need, with a stream that captures what they publish. */
  private async startBrokers(): Promise<void> {
    const { brokers, accounts } = this.options;
    const natsIds = brokers.filter((b) => b.type === 'nats').map((b) => b.id);
    const streamIds = brokers.filter((b) => b.type === 'redis-stream').map((b) => b.id);
    if (natsIds.length > 0) {
      // One stream, so one destination only: two would share (and de-duplicate into) it.
      if (natsIds.length > 1) throw new Error('the soak takes one nats destination');
      const nats = await NatsServer.start();
      this.nats = nats;
      const nc = await connect(nats.clientOptions);
      try {
        await (
          await jetstreamManager(nc)
        ).streams.add({
          name: NATS_STREAM,
          subjects: ['soak.>'],
          duplicate_window: SOAK_DEDUP_WINDOW_MS * 1_000_000,
        });
      } finally {
        await nc.close();
      }
      this.collectors.set(natsIds[0]!, new NatsStreamCollector(nats, NATS_STREAM));
    }
    if (streamIds.length > 0) {
      if (streamIds.length > 1) throw new Error('the soak takes one redis-stream destination');
      const target = await RedisServer.start();
      this.streamRedis = target;
      const streams = accounts.map((a) => REDIS_STREAM.replace('{account}', a.id));
      this.collectors.set(streamIds[0]!, new RedisStreamCollector(target.url, streams));
    }
  }

  private brokerTarget(broker: SoakBroker): Record<string, string> {
    return broker.type === 'nats'
      ? { url: this.nats!.url, subject: NATS_SUBJECT }
      : { url: this.streamRedis!.url, stream: REDIS_STREAM };
  }

  private prepare(): void {
    const { accounts, webhooks, brokers, replicas, workers, dir } = this.options;
    for (const a of accounts) this.sim.addClient(a.id);
    const base = (imkitUrl: string, tokenDir: string) => ({
      redis: { url: this.redis.url, prefix: this.prefix },
      server: { host: '127.0.0.1', port: 0 },
      imkit: { url: imkitUrl, clientKey: this.sim.clientKey, apiKey: this.sim.apiKey },
      accounts: accounts.map((a) => ({
        id: a.id,
        tokenFile: join(tokenDir, `${a.id}.token`),
        encoding: a.encoding,
        heartbeatTimeout: '3s',
        catchUp: true,
      })),
      webhooks: webhooks.map((w) => ({
        id: w.id,
        url: this.receivers.get(w.id)!.url,
        secret: SOAK_SECRET,
        accounts: [...w.accounts],
        events: [...w.events],
        timeout: '1s',
        concurrency: 16,
        retry: RETRY,
        breaker: BREAKER,
      })),
      destinations: brokers.map((b) => ({
        id: b.id,
        type: b.type,
        ...this.brokerTarget(b),
        accounts: [...b.accounts],
        events: [...b.events],
        timeout: '1s',
        concurrency: 16,
        retry: RETRY,
        breaker: BREAKER,
      })),
      // Covers the whole run, so catch-up and replica races can never deliver an event twice as new.
      dedupWindow: SOAK_DEDUP_WINDOW_MS,
      repeatWindow: SOAK_REPEAT_WINDOW_MS,
      shutdownTimeout: '3s',
      log: { level: 'info' },
    });
    for (let i = 0; i < replicas; i++) {
      const slotDir = join(dir, `ingest-${i}`);
      mkdirSync(slotDir, { recursive: true });
      this.tokens.push(new Map());
      for (const a of accounts) this.rotateToken(i, a.id);
      const configFile = writeConfig(base(this.proxies[i]!.url, slotDir), slotDir);
      this.ingestSlots.push({
        name: `ingest-${i}`,
        // The first replica also delivers, so it sends what it lands itself (direct delivery) and its
        // SIGKILLs cut direct sends off; the other only ingests.
        role: i === 0 ? 'all' : 'ingest',
        configFile,
        process: undefined,
        pastLogs: [],
      });
    }
    for (let i = 0; i < workers; i++) {
      const slotDir = join(dir, `worker-${i}`);
      mkdirSync(slotDir, { recursive: true });
      // Workers open no sockets; their token files are only there to satisfy the schema.
      for (const a of accounts) writeFileSync(join(slotDir, `${a.id}.token`), 'unused\n');
      const configFile = writeConfig(base(this.sim.url, slotDir), slotDir);
      this.workerSlots.push({
        name: `worker-${i}`,
        role: 'worker',
        configFile,
        process: undefined,
        pastLogs: [],
      });
    }
  }

  private tokenFile(i: number, account: string): string {
    return join(this.options.dir, `ingest-${i}`, `${account}.token`);
  }

  private async startSlot(slot: Slot): Promise<void> {
    if (slot.process && slot.process.exitCode === undefined) return;
    slot.process = await BridgeProcess.start(slot.configFile, { role: slot.role });
  }

  private async killSlot(slot: Slot): Promise<void> {
    const bridge = slot.process;
    if (!bridge) return;
    await bridge.kill9();
    slot.pastLogs.push(...bridge.logs, `---- ${slot.name} SIGKILLed at ${new Date().toISOString()} ----`);
    slot.process = undefined;
  }

  private saveLogs(slot: Slot): void {
    const lines = [...slot.pastLogs, ...(slot.process?.logs ?? [])];
    writeFileSync(join(this.options.dir, `${slot.name}.log`), `${lines.join('\n')}\n`);
  }
}
