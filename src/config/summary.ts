import type { AccountConfig, BridgeConfig, WebhookConfig } from './schema.js';

/** Accounts and webhooks listed one per line at most; a generated config with thousands stays readable. */
const LISTED = 20;

function tokenSource(account: AccountConfig): string {
  if (account.tokenFile) return `tokenFile ${account.tokenFile}`;
  if (account.issueToken) return 'issued via /admin/clients';
  return 'static token';
}

/** A URL without credentials or query string: those can carry secrets. */
function safeUrl(raw: string): string {
  const url = new URL(raw);
  return `${url.protocol}//${url.host}${url.pathname}`;
}

function secretCount(webhook: WebhookConfig): number {
  if (webhook.secret === undefined) return 0;
  return typeof webhook.secret === 'string' ? 1 : webhook.secret.length;
}

function more(count: number): string[] {
  return count > LISTED ? [`  … and ${count - LISTED} more`] : [];
}

/** The `config check` summary: what connects where and which events go to which webhook. No secrets. */
export function summarizeConfig(config: BridgeConfig, file: string): string {
  const lines = [`${file}: ok`, `redis: ${safeUrl(config.redis.url)} (prefix "${config.redis.prefix}")`];
  lines.push(`imkit: ${safeUrl(config.imkit.url)}`);
  const admin = config.server;
  lines.push(
    `admin http: ${admin.host}:${admin.port}, at most ${admin.maxConnections} connections, ` +
      `request timeout ${admin.requestTimeout} ms, /status ${admin.adminToken ? 'needs the admin token' : 'open'}`,
  );
  lines.push(`accounts (${config.accounts.length}):`);
  for (const a of config.accounts.slice(0, LISTED)) {
    lines.push(
      `  - ${a.id}: ${tokenSource(a)}, encoding ${a.encoding}, events ${a.events.join(', ')}, ` +
        `heartbeat ${a.heartbeatTimeout} ms, catch-up ${a.catchUp ? 'on' : 'off'}`,
    );
  }
  lines.push(...more(config.accounts.length));
  lines.push(`webhooks (${config.webhooks.length}):`);
  for (const w of config.webhooks.slice(0, LISTED)) {
    const signing =
      secretCount(w) === 0 ? 'UNSIGNED' : `signed (${secretCount(w)} secret${secretCount(w) > 1 ? 's' : ''})`;
    const headers = Object.keys(w.headers);
    lines.push(
      `  - ${w.id}: ${safeUrl(w.url)}, ${signing}, accounts ${w.accounts.join(', ')}, events ${w.events.join(', ')}, ` +
        `concurrency ${w.concurrency}, ${w.retry.schedule.length} retries` +
        (headers.length > 0 ? `, headers ${headers.join(', ')}` : ''),
    );
  }
  lines.push(...more(config.webhooks.length));
  if (config.webhooks.length === 0) lines.push('  (none: events are received but not delivered anywhere)');
  lines.push(
    `dedup window: ${config.dedupWindow} ms, repeat window: ${config.repeatWindow} ms, ` +
      `shutdown timeout: ${config.shutdownTimeout} ms`,
  );
  return lines.join('\n');
}
