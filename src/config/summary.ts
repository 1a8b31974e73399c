import type { AccountConfig, BridgeConfig, WebhookConfig } from './schema.js';

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

/** The `config check` summary: what connects where and which events go to which webhook. No secrets. */
export function summarizeConfig(config: BridgeConfig, file: string): string {
  const lines = [`${file}: ok`, `redis: ${safeUrl(config.redis.url)} (prefix "${config.redis.prefix}")`];
  lines.push(`imkit: ${safeUrl(config.imkit.url)}`);
  lines.push(`admin http: ${config.server.host}:${config.server.port}`);
  lines.push(`accounts (${config.accounts.length}):`);
  for (const a of config.accounts) {
    lines.push(
      `  - ${a.id}: ${tokenSource(a)}, encoding ${a.encoding}, events ${a.events.join(', ')}, ` +
        `heartbeat ${a.heartbeatTimeout} ms, catch-up ${a.catchUp ? 'on' : 'off'}`,
    );
  }
  lines.push(`webhooks (${config.webhooks.length}):`);
  for (const w of config.webhooks) {
    const signing =
      secretCount(w) === 0 ? 'UNSIGNED' : `signed (${secretCount(w)} secret${secretCount(w) > 1 ? 's' : ''})`;
    lines.push(
      `  - ${w.id}: ${safeUrl(w.url)}, ${signing}, accounts ${w.accounts.join(', ')}, events ${w.events.join(', ')}, ` +
        `concurrency ${w.concurrency}, ${w.retry.schedule.length} retries`,
    );
  }
  if (config.webhooks.length === 0) lines.push('  (none: events are received but not delivered anywhere)');
  lines.push(
    `dedup window: ${config.dedupWindow} ms, repeat window: ${config.repeatWindow} ms, ` +
      `shutdown timeout: ${config.shutdownTimeout} ms`,
  );
  return lines.join('\n');
}
