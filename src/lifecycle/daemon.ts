import { hostname } from 'node:os';
import { AdminServer, type AdminSource, type Readiness } from '../admin/server.js';
import { createConsole } from '../admin/console/console.js';
import { BridgeMetrics } from '../admin/metrics.js';
import { destinationsOf } from '../config/destinations.js';
import type { BridgeConfig } from '../config/schema.js';
import { QueueStatusReader } from '../deliver/queue-status.js';
import { describeDestination } from '../deliver/registry.js';
import { DeliveryWorkers } from '../deliver/workers.js';
import { UsageError } from '../errors.js';
import { VERSION } from '../version.js';
import { AccountPlacer } from './placer.js';
import { CoverageCheck } from './coverage.js';
import { Membership } from './membership.js';
import { describeError } from './describe-error.js';
import { Deadline, within } from './deadline.js';
import { Ingest } from './ingest.js';
import { createLogger, type Logger } from './logger.js';
import { startTracing, type EventTracer } from './tracing.js';
import { redisSettings } from '../queue/redis.js';

export type Role = 'all' | 'ingest' | 'worker';

/** How a stop went: events that were received and never landed in Redis. */
export interface StopReport {
  readonly lost: number;
}

const REDIS_CHECK_TIMEOUT_MS = 2_000;

/** With `ingest.copies: N`: the membership, the placer that holds this process's share, the coverage gauge. */
interface Sharing {
  membership: Membership;
  placer: AccountPlacer;
  coverage: CoverageCheck;
}

/** A running bridge: the parts its role needs, the admin server, and an ordered `close()`. */
export class Daemon implements AdminSource {
  private readonly startedAt = Date.now();
  private closing: Promise<StopReport> | undefined;
  adminPort = 0;

  private constructor(
    private readonly config: BridgeConfig,
    readonly role: Role,
    private readonly logger: Logger,
    private readonly metrics: BridgeMetrics,
    private readonly queues: QueueStatusReader,
    private readonly admin: AdminServer | undefined,
    private readonly ingest: Ingest | undefined,
    private readonly workers: DeliveryWorkers | undefined,
    /** With `ingest.copies: N`: which accounts this process holds. */
    private readonly sharing: Sharing | undefined,
    private readonly tracer: EventTracer | undefined,
  ) {}

  /** `tracer`: spans for every event (docs/operations.md, "Tracing"); flushed by `close()`. */
  static async start(
    config: BridgeConfig,
    role: Role,
    logger: Logger,
    tracer?: EventTracer,
  ): Promise<Daemon> {
    const metrics = new BridgeMetrics();
    const queues = new QueueStatusReader({ config, metrics, logger });
    const workers =
      role === 'ingest'
        ? undefined
        : new DeliveryWorkers({ config, logger, metrics, ...(tracer && { tracer }) });
    // With both halves in one process, ingest hands each job to this process's lane as soon as Redis holds it.
    let ingest: Ingest | undefined;
    try {
      ingest =
        role === 'worker'
          ? undefined
          : await Ingest.create(config, logger, metrics, workers && ((id) => workers.direct(id)), tracer);
    } catch (err) {
      await workers?.close(0);
      throw err;
    }
    // The admin server calls back into the daemon, which only exists once the server does.
    const source: AdminSource = {
      readiness: () => daemon.readiness(),
      status: () => daemon.status(),
      refreshMetrics: () => daemon.refreshMetrics(),
    };
    const operatingConsole = createConsole({
      config,
      source,
      metrics,
      logger: logger.child({ stage: 'console' }),
    });
    const admin = new AdminServer(
      source,
      metrics,
      logger.child({ stage: 'admin' }),
      config.server,
      operatingConsole,
    );
    const sharing = ingest && Daemon.sharing(config, ingest, logger, metrics);
    const daemon = new Daemon(config, role, logger, metrics, queues, admin, ingest, workers, sharing, tracer);
    try {
      daemon.adminPort = await admin.listen(config.server.host, config.server.port);
    } catch (err) {
      await daemon.close();
      throw err;
    }
    if (workers) {
      for (const w of config.webhooks) {
        if (w.secret === undefined)
          logger.warn({ destination: w.id }, 'webhook has no secret: its requests are not signed');
      }
    }
    workers?.start();
    ingest?.start();
    sharing?.placer.start();
    sharing?.coverage.start();
    logger.info(
      {
        role,
        version: VERSION,
        accounts: ingest ? config.accounts.length : 0,
        destinations: destinationsOf(config).length,
      },
      'imkit-bridge started',
    );
    return daemon;
  }

  /** With `ingest.copies: N`, the membership and the placer that hold this process's share of the accounts. */
  private static sharing(
    config: BridgeConfig,
    ingest: Ingest,
    logger: Logger,
    metrics: BridgeMetrics,
  ): Sharing | undefined {
    const { copies, lease } = config.ingest;
    if (copies === 'all') return undefined;
    const membership = new Membership({
      redis: redisSettings(config.redis),
      prefix: config.redis.prefix,
      lease,
      host: hostname(),
      logger,
      metrics,
    });
    const accounts = config.accounts.map((a) => a.id);
    const placer = new AccountPlacer(membership, ingest, { accounts, copies, lease, logger, metrics });
    const coverage = new CoverageCheck(membership, { accounts, copies, lease, logger, metrics });
    return { membership, placer, coverage };
  }

  async readiness(): Promise<Readiness> {
    if (this.closing) return { ready: false, reasons: ['stopping'] };
    const reasons: string[] = [];
    const redisProblem = await this.redisProblem();
    if (redisProblem !== undefined) reasons.push(`redis: ${redisProblem}`);
    if (this.ingest) {
      const held = this.ingest.redisProblem;
      if (held !== undefined) reasons.push(`redis: ${held}`);
      else if (!this.ingest.redisReady) reasons.push('redis: ingest is buffering events in memory');
      if (this.sharing) reasons.push(...this.sharing.placer.readinessProblems());
      else for (const id of this.ingest.notLive()) reasons.push(`account ${id}: not authenticated`);
    }
    return { ready: reasons.length === 0, reasons };
  }

  async status(): Promise<unknown> {
    // BullMQ waits for a connection that never gets ready (a wrong password): bounded like /readyz.
    const read = this.queues.read().catch(() => undefined);
    const counts = (await within(read, REDIS_CHECK_TIMEOUT_MS)) ? await read : undefined;
    const delivery = this.workers?.status() ?? [];
    const ingest = this.ingest?.status();
    return {
      version: VERSION,
      role: this.role,
      startedAt: new Date(this.startedAt).toISOString(),
      uptimeSeconds: Math.round((Date.now() - this.startedAt) / 1000),
      redis: await this.queues.redis(counts !== undefined),
      ...(ingest
        ? {
            ingest: {
              buffered: ingest.buffered,
              redisReady: ingest.redisReady,
              ...(this.sharing ? { sharing: this.sharing.placer.status() } : {}),
            },
          }
        : {}),
      accounts: ingest?.accounts ?? [],
      destinations: destinationsOf(this.config).map((d) => {
        const queue = counts?.find((c) => c.destination === d.id);
        const worker = delivery.find((w) => w.destination === d.id);
        return {
          id: d.id,
          type: d.type,
          target: describeDestination(d),
          ...this.queues.placement(d.jobQueue),
          ...(queue && {
            waiting: queue.waiting,
            active: queue.active,
            delayed: queue.delayed,
            dead: queue.failed,
          }),
          ...(worker && {
            breaker: worker.breaker,
            running: worker.running,
            inFlight: worker.inFlight,
            lastError: worker.lastError,
          }),
        };
      }),
    };
  }

  async refreshMetrics(): Promise<void> {
    await this.queues.refreshMetrics().catch(() => undefined);
  }

  /**
   * Ordered, within one `shutdownTimeout` (docs/operations.md, "Shutdown"): stop reading sockets,
   * finish recoveries and land what was buffered (with workers in this process, in at most half of
   * the time, while deliveries go on), then let deliveries finish in what is left and hand the rest
   * back, then the status connection and the admin server, and last the spans still to export. A
   * phase with nothing to wait for takes no time.
   */
  close(): Promise<StopReport> {
    this.closing ??= (async () => {
      const deadline = Deadline.in(this.config.shutdownTimeout);
      this.logger.info({ role: this.role }, 'stopping');
      const ingestPhase = this.workers ? deadline.share(0.5) : deadline;
      if (this.sharing) {
        this.sharing.coverage.stop();
        // The next holders connect before this process lets go; the rest of the phase is ingest's own.
        await this.sharing.placer.handover(Math.min(this.config.ingest.lease, ingestPhase.remaining() * 0.4));
      }
      const lost = await this.ingest?.close(ingestPhase);
      await this.sharing?.membership.close();
      await this.workers?.close(deadline.remaining());
      await within(this.queues.close(), deadline.remaining());
      await this.admin?.close();
      if (this.tracer && !(await within(this.tracer.close(), deadline.remaining())))
        this.logger.warn('tracing: spans not exported within the shutdown timeout were dropped');
      const report = { lost: [...(lost?.values() ?? [])].reduce((a, b) => a + b, 0) };
      this.logger.info(report, 'stopped');
      return report;
    })();
    return this.closing;
  }

  /**
   * Undefined when Redis answers, else what is wrong in the words of the cause: the connection's
   * latest error (ECONNREFUSED, WRONGPASS, a certificate) rather than the failed command's
   * "Connection is closed".
   */
  private async redisProblem(): Promise<string | undefined> {
    const check = this.queues.read().then(
      () => undefined,
      (err: unknown) => this.queues.connectionError() ?? describeError(err),
    );
    const timeout = new Promise<string>((resolve) =>
      setTimeout(
        () => resolve(this.queues.connectionError() ?? `no answer within ${REDIS_CHECK_TIMEOUT_MS} ms`),
        REDIS_CHECK_TIMEOUT_MS,
      ).unref(),
    );
    return Promise.race([check, timeout]);
  }
}

/**
 * `imkit-bridge run`: starts the daemon, stops it on SIGTERM/SIGINT and resolves with the exit code.
 * A second signal while stopping exits at once.
 */
export async function runDaemon(config: BridgeConfig, role: Role): Promise<number> {
  const logger = createLogger({ level: config.log.level });
  let daemon: Daemon;
  try {
    daemon = await Daemon.start(config, role, logger, await startTracing(process.env, logger));
  } catch (err) {
    logger.fatal({ err }, 'cannot start');
    return new Promise<number>((resolve) => logger.flush(() => resolve(err instanceof UsageError ? 1 : 2)));
  }
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: NodeJS.Signals) => {
      if (stopping) {
        logger.warn({ signal }, 'second signal: exiting without waiting');
        logger.flush();
        process.exit(2);
      }
      stopping = true;
      logger.info({ signal }, 'signal received');
      // Events that never reached Redis are a fatal runtime error: the stop lost data.
      daemon.close().then(
        (report) => resolve(report.lost > 0 ? 2 : 0),
        (err: unknown) => {
          logger.error({ err }, 'error while stopping');
          resolve(2);
        },
      );
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
    process.on('uncaughtException', (err) => {
      logger.fatal({ err }, 'uncaught exception');
      logger.flush();
      process.exit(2);
    });
    process.on('unhandledRejection', (err) => {
      logger.fatal({ err }, 'unhandled rejection');
      logger.flush();
      process.exit(2);
    });
  }).then((code) => new Promise<number>((resolve) => logger.flush(() => resolve(code))));
}
