import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * Every Prometheus series the bridge exports, on a registry of its own so several bridges can live
 * in one test process. Names and labels are part of the external contract (docs/operations.md lists them).
 */
export class BridgeMetrics {
  readonly registry = new Registry();

  readonly eventsReceived = new Counter({
    name: 'imkit_bridge_events_received_total',
    help: 'Events received from IMKIT sockets and REST catch-up, by account and event type.',
    labelNames: ['account', 'type'] as const,
    registers: [this.registry],
  });

  readonly eventsDeduplicated = new Counter({
    name: 'imkit_bridge_events_deduplicated_total',
    help: 'Queued copies not delivered again: the event id was claimed within dedupWindow, the destination already held it (redis-stream), or (non-chat) the same content received within repeatWindow was sent.',
    registers: [this.registry],
  });

  readonly decodeFailures = new Counter({
    name: 'imkit_bridge_decode_failures_total',
    help: 'Payloads that could not be decoded and were quarantined.',
    labelNames: ['account'] as const,
    registers: [this.registry],
  });

  readonly socketConnected = new Gauge({
    name: 'imkit_bridge_socket_connected',
    help: '1 while the account session is authenticated and live, else 0.',
    labelNames: ['account'] as const,
    registers: [this.registry],
  });

  readonly accountsHeld = new Gauge({
    name: 'imkit_bridge_accounts_held',
    help: 'Accounts this ingest process holds a session for.',
    registers: [this.registry],
  });

  readonly ingestMembers = new Gauge({
    name: 'imkit_bridge_ingest_members',
    help: 'Live ingest processes sharing the accounts, as this process last saw them (copies: N only).',
    registers: [this.registry],
  });

  readonly membershipChanges = new Counter({
    name: 'imkit_bridge_membership_changes_total',
    help: 'Ingest processes that joined, left (SIGTERM) or expired (no renewal within lease), each counted by one process.',
    labelNames: ['change'] as const,
    registers: [this.registry],
  });

  readonly accountMoves = new Counter({
    name: 'imkit_bridge_account_moves_total',
    help: 'Accounts this process acquired or released, by direction and cause.',
    labelNames: ['direction', 'cause'] as const,
    registers: [this.registry],
  });

  readonly accountsUnderCopies = new Gauge({
    name: 'imkit_bridge_accounts_under_copies',
    help: 'Accounts held by fewer than ingest.copies live ingest processes, among those this process checks (each account is checked by one process: sum over processes). copies: N only.',
    registers: [this.registry],
  });

  readonly takeovers = new Counter({
    name: 'imkit_bridge_takeovers_total',
    help: 'Accounts this process acquired because a process holding them expired.',
    registers: [this.registry],
  });

  readonly reconnects = new Counter({
    name: 'imkit_bridge_reconnects_total',
    help: 'Times an account session was dropped and reconnected, by reason.',
    labelNames: ['account', 'reason'] as const,
    registers: [this.registry],
  });

  readonly ingestBuffered = new Gauge({
    name: 'imkit_bridge_ingest_buffer_events',
    help: 'Events held in memory at ingest, waiting for Redis.',
    registers: [this.registry],
  });

  readonly ingestUnconfirmed = new Gauge({
    name: 'imkit_bridge_ingest_unconfirmed_events',
    help: 'Events written to Redis whose replicas have not acknowledged them yet (redis.waitReplicas); still held in memory.',
    registers: [this.registry],
  });

  readonly redisWaitDuration = new Histogram({
    name: 'imkit_bridge_redis_wait_duration_seconds',
    help: 'Duration of one WAIT for replica acknowledgement (redis.waitReplicas).',
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2],
    registers: [this.registry],
  });

  readonly redisWaitShortfalls = new Counter({
    name: 'imkit_bridge_redis_wait_shortfalls_total',
    help: 'WAITs that returned fewer replicas than redis.waitReplicas within redis.waitTimeout.',
    registers: [this.registry],
  });

  readonly redisRelanded = new Counter({
    name: 'imkit_bridge_redis_relanded_events_total',
    help: 'Events written again because the connection that wrote them closed or failed over before replicas confirmed them.',
    registers: [this.registry],
  });

  readonly redisMasterChanges = new Counter({
    name: 'imkit_bridge_redis_master_changes_total',
    help: 'Redis master changes seen by ingest: a new master address from the sentinels, or a cluster failover.',
    registers: [this.registry],
  });

  readonly ingestOverflow = new Counter({
    name: 'imkit_bridge_ingest_buffer_overflow_total',
    help: 'Events dropped because the in-memory ingest buffer was full while Redis was unreachable.',
    registers: [this.registry],
  });

  readonly eventsLost = new Counter({
    name: 'imkit_bridge_events_lost_total',
    help: 'Events received and never landed in Redis, by account and reason (shutdown: still buffered when the process stopped).',
    labelNames: ['account', 'reason'] as const,
    registers: [this.registry],
  });

  readonly catchUpMessages = new Counter({
    name: 'imkit_bridge_catch_up_messages_total',
    help: 'Chat messages fetched over REST after a gap.',
    labelNames: ['account'] as const,
    registers: [this.registry],
  });

  readonly deliveries = new Counter({
    name: 'imkit_bridge_deliveries_total',
    help: 'Delivery attempts by outcome: delivered, retry (will be tried again) or dead (dead-lettered).',
    labelNames: ['destination', 'outcome'] as const,
    registers: [this.registry],
  });

  readonly deliveryDuration = new Histogram({
    name: 'imkit_bridge_delivery_duration_seconds',
    help: 'Duration of one delivery attempt (a request, a publish and its acknowledgement).',
    labelNames: ['destination'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });

  readonly eventLatency = new Histogram({
    name: 'imkit_bridge_event_latency_seconds',
    help: 'From the bridge receiving an event to the destination acknowledging it.',
    labelNames: ['destination'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 300, 3600, 36000],
    registers: [this.registry],
  });

  readonly queueJobs = new Gauge({
    name: 'imkit_bridge_queue_jobs',
    help: 'Jobs in each destination queue by state (waiting, active, delayed, failed = dead-lettered).',
    labelNames: ['destination', 'state'] as const,
    registers: [this.registry],
  });

  readonly oldestWaiting = new Gauge({
    name: 'imkit_bridge_queue_oldest_waiting_seconds',
    help: 'Age of the oldest event waiting in each destination queue (0 when none waits): a stuck queue grows it.',
    labelNames: ['destination'] as const,
    registers: [this.registry],
  });

  readonly breakerOpen = new Gauge({
    name: 'imkit_bridge_breaker_open',
    help: "1 while the destination's circuit breaker is open or half-open, else 0.",
    labelNames: ['destination'] as const,
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'imkit_bridge_process_' });
  }
}
