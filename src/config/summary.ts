import { describeDestination } from '../deliver/registry.js';
import { destinationsOf, type DestinationConfig } from './destinations.js';
import { formatDuration } from './duration.js';
import { safeUrl } from './fields.js';
import { keySlot, redisSettings } from '../queue/redis.js';
import type { AccountConfig, BridgeConfig, WebhookConfig } from './schema.js';

/** Accounts and destinations listed one per line at most; a generated config with thousands stays readable. */
const LISTED = 20;

function tokenSource(account: AccountConfig): string {
  if (account.tokenFile) return `tokenFile ${account.tokenFile}`;
  if (account.issueToken) return 'issued via /admin/clients';
  return 'static token';
}

function secretCount(webhook: WebhookConfig): number {
  if (webhook.secret === undefined) return 0;
  return typeof webhook.secret === 'string' ? 1 : webhook.secret.length;
}

/** Signing and extra headers (names only: values can be credentials). */
function signingAndHeaders(webhook: WebhookConfig): string {
  const secrets = secretCount(webhook);
  const signing = secrets === 0 ? 'UNSIGNED' : `signed (${secrets} secret${secrets > 1 ? 's' : ''})`;
  const headers = Object.keys(webhook.headers);
  return `, ${signing}` + (headers.length > 0 ? `, headers ${headers.join(', ')}` : '');
}

function lanePacing(d: DestinationConfig): string {
  const rate = d.rateLimit ? `, at most ${d.rateLimit.max} per ${d.rateLimit.duration} ms` : '';
  return `concurrency ${d.concurrency}${rate}, timeout ${d.timeout} ms, ${d.retry.schedule.length} retries`;
}

function sharing({ copies, lease, catchUpConcurrency }: BridgeConfig['ingest']): string {
  const catchUps = `; at most ${catchUpConcurrency} REST catch-ups at once`;
  if (copies === 'all') return `ingest: every ingest process holds every account (copies all)${catchUps}`;
  const processes = copies === 1 ? 'process' : 'processes';
  return (
    `ingest: each account on ${copies} live ingest ${processes}, lease ${formatDuration(lease)} ` +
    `(IMKIT sees ${copies} socket${copies === 1 ? '' : 's'} per account)${catchUps}`
  );
}

function more(count: number): string[] {
  return count > LISTED ? [`  … and ${count - LISTED} more`] : [];
}

/** The `config check` summary: what connects where and which events go to which destination. No secrets. */
export function summarizeConfig(config: BridgeConfig, file: string): string {
  const lines = [
    `${file}: ok`,
    `redis: ${redisSettings(config.redis).describe()} (prefix "${config.redis.prefix}")`,
  ];
  lines.push(`imkit: ${safeUrl(config.imkit.url)}`);
  const admin = config.server;
  lines.push(
    `admin http: ${admin.host}:${admin.port}, at most ${admin.maxConnections} connections, ` +
      `request timeout ${admin.requestTimeout} ms, ` +
      (admin.adminToken
        ? `/status needs the admin token, console on at / (sessions last ${formatDuration(admin.sessionTimeout)})`
        : '/status open, console off (set server.adminToken)'),
  );
  lines.push(`accounts (${config.accounts.length}):`);
  for (const a of config.accounts.slice(0, LISTED)) {
    lines.push(
      `  - ${a.id}: ${tokenSource(a)}, encoding ${a.encoding}, events ${a.events.join(', ')}, ` +
        `heartbeat ${a.heartbeatTimeout} ms, catch-up ${a.catchUp ? 'on' : 'off'}`,
    );
  }
  lines.push(...more(config.accounts.length));
  lines.push(sharing(config.ingest));
  const destinations = destinationsOf(config);
  const webhookDetails = new Map(config.webhooks.map((w) => [w.id, signingAndHeaders(w)]));
  lines.push(`destinations (${destinations.length}):`);
  for (const d of destinations.slice(0, LISTED)) {
    lines.push(
      `  - ${d.id} (${d.type}): ${describeDestination(d)}${webhookDetails.get(d.id) ?? ''}, ` +
        `accounts ${d.accounts.join(', ')}, events ${d.events.join(', ')}, ${lanePacing(d)}`,
    );
  }
  lines.push(...more(destinations.length));
  if (config.redis.cluster && destinations.length > 0) {
    // Tags do not spread by themselves: the operator checks the slots against the cluster's shards.
    const slots = destinations.map((d) => `${d.id}→slot ${keySlot(d.jobQueue)}`);
    lines.push(`destination queues: ${slots.join(', ')}`);
  }
  if (destinations.length === 0) lines.push('  (none: events are received but not delivered anywhere)');
  lines.push(
    `dedup window: ${config.dedupWindow} ms, repeat window: ${config.repeatWindow} ms, ` +
      `shutdown timeout: ${config.shutdownTimeout} ms`,
  );
  return lines.join('\n');
}
