import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { BridgeProcess, runCli } from '../support/bridge-process.js';
import { RedisServer, waitFor } from '../support/redis.js';
import { configFile as file, configProblems } from './problems.js';

const SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';

/** A valid config with `webhook` lines spliced into its one webhook and `top` appended at the root. */
function yaml(options: { webhook?: string; top?: string; account?: string; redis?: string } = {}): string {
  return `
redis: { url: ${options.redis ?? 'redis://127.0.0.1:6379'} }
server: { host: 127.0.0.1, port: 0 }
imkit: { url: https://app.imkit.io, clientKey: '\${env:IMKIT_CLIENT_KEY}' }
accounts:
  - id: audit-bot
    token: \${env:AUDIT_BOT_TOKEN}
${options.account ?? ''}
webhooks:
  - id: audit
    url: https://audit.example.com/imkit
${options.webhook ?? `    secret: \${env:AUDIT_WEBHOOK_SECRET}`}
${options.top ?? ''}
`;
}

const FULL_ENV = { AUDIT_BOT_TOKEN: 'tok', AUDIT_WEBHOOK_SECRET: SECRET, IMKIT_CLIENT_KEY: 'ck' };

/** The environment of a shell that has none of the config's variables, whatever the test runner has. */
const NO_ENV = { AUDIT_BOT_TOKEN: '', AUDIT_WEBHOOK_SECRET: '', IMKIT_CLIENT_KEY: '' };

describe('an unset ${env:NAME} is an error, except account credentials a command does not need', () => {
  test('an unset webhook secret fails config check naming the field and the variable, not the value', async () => {
    const result = await runCli(['config', 'check', '--config', file(yaml())], {
      env: { ...NO_ENV, AUDIT_BOT_TOKEN: 'tok-value' },
    });
    expect(result.code).toBe(1);
    expect(result.stderr.trim().split('\n')).toEqual([
      'webhooks[0].secret: ${env:AUDIT_WEBHOOK_SECRET} is not set',
    ]);
    expect(result.stderr + result.stdout).not.toContain('tok-value');
  });

  test('a webhook without a secret key is accepted and shown as UNSIGNED', async () => {
    const result = await runCli(['config', 'check', '--config', file(yaml({ webhook: '' }))], {
      env: NO_ENV,
    });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('audit (http): https://audit.example.com/imkit, UNSIGNED');
  });

  test('config check does not need account credentials: it notes which are unset and who needs them', async () => {
    const result = await runCli(['config', 'check', '--config', file(yaml())], {
      env: { ...NO_ENV, AUDIT_WEBHOOK_SECRET: SECRET },
    });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(
      'accounts[0].token: ${env:AUDIT_BOT_TOKEN} is not set; needed by run --role all|ingest',
    );
    expect(result.stdout).toContain(
      'imkit.clientKey: ${env:IMKIT_CLIENT_KEY} is not set; needed by run --role all|ingest',
    );
  });

  test('an unset variable outside the credentials is an error wherever it is', () => {
    expect(problems(yaml({ top: 'dedupWindow: ${env:DEDUP}\nlog: { level: "${env:LOG_LEVEL}" }' }))).toEqual([
      'dedupWindow: ${env:DEDUP} is not set',
      'log.level: ${env:LOG_LEVEL} is not set',
    ]);
  });

  describe('processes', () => {
    let redis: RedisServer;
    beforeAll(async () => {
      redis = await RedisServer.start();
    });
    afterAll(async () => redis.close());

    test('dlq list and run --role worker work without account tokens (an unsigned webhook is logged once); run --role all|ingest exit 1 naming them', async () => {
      const path = file(yaml({ redis: redis.url }));
      const env = { ...NO_ENV, AUDIT_WEBHOOK_SECRET: SECRET };

      const list = await runCli(['dlq', 'list', '--config', path], { env });
      expect(list.stderr).toBe('');
      expect(list.code).toBe(0);

      const worker = await BridgeProcess.start(path, { role: 'worker', env });
      try {
        await worker.waitReady();
      } finally {
        await worker.stop();
      }
      expect(worker.exitCode).toBe(0);

      const unsigned = await BridgeProcess.start(file(yaml({ redis: redis.url, webhook: '' })), {
        role: 'worker',
        env,
      });
      const warnings = () =>
        unsigned.records().filter((r) => r.level === 40 && /not signed/.test(String(r.msg)));
      await waitFor(() => unsigned.records().some((r) => r.msg === 'imkit-bridge started'), {
        what: 'unsigned worker started',
      });
      await unsigned.stop();
      expect(warnings()).toEqual([expect.objectContaining({ destination: 'audit' })]);

      for (const role of ['all', 'ingest']) {
        const run = await runCli(['run', '--role', role, '--config', path], { env });
        expect(run.code, role).toBe(1);
        expect(run.stderr).toContain('accounts[0].token: ${env:AUDIT_BOT_TOKEN} is not set');
        expect(run.stderr).toContain('imkit.clientKey: ${env:IMKIT_CLIENT_KEY} is not set');
      }
    });
  });
});

describe('config that would fail at run time fails config check', () => {
  test('a duration longer than a timer can hold is an error in every duration field', () => {
    const lines = problems(
      yaml({
        account: '    heartbeatTimeout: 25d',
        webhook: `    secret: ${SECRET}\n    timeout: 30d\n    retry: { schedule: [5s, 2147483648] }\n    breaker: { cooldown: 1000d }`,
        top: 'dedupWindow: 24d\nshutdownTimeout: 9999h',
      }),
    );
    expect(lines.sort()).toEqual(
      [
        'accounts[0].heartbeatTimeout',
        'shutdownTimeout',
        'webhooks[0].breaker.cooldown',
        'webhooks[0].retry.schedule[1]',
        'webhooks[0].timeout',
      ].map((path) => `${path}: too long: at most 2147483647 ms (about 24.8 days)`),
    );
  });

  test('invalid, hop-by-hop and bridge-owned headers are errors naming each header', () => {
    const lines = problems(
      yaml({
        webhook: `    secret: ${SECRET}
    headers:
      x-ok: fine
      "X Spaced": v
      x-injected: "a\\r\\nx-evil: 1"
      Transfer-Encoding: chunked
      Connection: close
      Host: elsewhere
      Content-Length: "3"
      webhook-id: forged
      User-Agent: forged
      X-OK: again`,
      }),
    );
    const byHeader = Object.fromEntries(
      lines.map((l) => [l.split(': ')[0], l.split(': ').slice(1).join(': ')]),
    );
    expect(Object.keys(byHeader).sort()).toEqual(
      [
        'X Spaced',
        'x-injected',
        'Transfer-Encoding',
        'Connection',
        'Host',
        'Content-Length',
        'webhook-id',
        'User-Agent',
        'X-OK',
      ]
        .map((h) => `webhooks[0].headers.${h}`)
        .sort(),
    );
    expect(byHeader['webhooks[0].headers.x-injected']).toMatch(/line breaks/);
    expect(byHeader['webhooks[0].headers.Transfer-Encoding']).toMatch(/hop-by-hop/);
    expect(byHeader['webhooks[0].headers.User-Agent']).toMatch(/set by the bridge/);
  });

  test('credentials in a webhook URL become a Basic authorization header and leave the URL', async () => {
    const url = 'https://aud%40it:p%3Ass@audit.example.com/imkit';
    const withUrl = (text: string) => text.replace('https://audit.example.com/imkit', url);
    const config = parseConfig(withUrl(yaml()), FULL_ENV);
    expect(config.webhooks[0]!.url).toBe('https://audit.example.com/imkit');
    expect(config.webhooks[0]!.headers).toEqual({
      authorization: `Basic ${Buffer.from('aud@it:p:ss').toString('base64')}`,
    });

    const both = withUrl(
      yaml({ webhook: `    secret: ${SECRET}\n    headers: { Authorization: Bearer x }` }),
    );
    expect(problems(both)).toEqual([
      'webhooks[0].url: has credentials and headers sets authorization too; keep one of them',
    ]);

    const check = await runCli(['config', 'check', '--config', file(withUrl(yaml()))], { env: FULL_ENV });
    expect(check.code).toBe(0);
    expect(check.stdout).toContain('audit (http): https://audit.example.com/imkit, signed (1 secret)');
    expect(check.stdout).toContain('headers authorization');
    expect(check.stdout).not.toMatch(/p%3Ass|p:ss|aud%40it/);
  });

  test('a YAML alias bomb is a config error (exit 1), not a crash', async () => {
    const bomb = [
      'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
      ...'bcdefghi'.split('').map((k, i) => `${k}: &${k} [${Array(9).fill(`*${'abcdefghi'[i]}`).join(',')}]`),
    ].join('\n');
    const result = await runCli(['config', 'check', '--config', file(`${yaml()}\n${bomb}\n`)], {
      env: FULL_ENV,
    });
    expect(result.code).toBe(1);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    expect(result.stderr).toMatch(/alias/i);
  });
});

describe('config check on a huge file stays quick and short', () => {
  test('a 50 MB file is refused at once with one line', async () => {
    const entry = '  - { id: acc, token: t }\n';
    const text = `${yaml()}\nextra:\n${entry.repeat(Math.ceil((50 * 1_048_576) / entry.length))}`;
    const result = await runCli(['config', 'check', '--config', file(text)], {
      env: FULL_ENV,
      timeoutMs: 20_000,
    });
    expect(result.code).toBe(1);
    expect(result.stderr.trim().split('\n')).toEqual([expect.stringMatching(/too large for a config file/)]);
  });

  test('a duplicate key in a map of 100,000 keys is found and named by line (the check is linear)', async () => {
    const keys = Array.from({ length: 100_000 }, (_, i) => `      x-h${i}: v\n`).join('');
    const text = yaml({ webhook: `    secret: ${SECRET}\n    headers:\n${keys}      x-h7: again` });
    const line = text.split('\n').findIndex((l) => l.includes('x-h7: again')) + 1;
    const path = file(text);
    // 20 s is far beyond what the linear check takes and far below what a quadratic one does.
    const result = await runCli(['config', 'check', '--config', path], { env: FULL_ENV, timeoutMs: 20_000 });
    expect(result.code).toBe(1);
    expect(result.stderr.trim()).toBe(`${path}:${line}:7: webhooks[0].headers.x-h7: duplicate key`);
  });

  test('hundreds of accounts and problems give a summary and an error list that stay short', async () => {
    const accounts = Array.from({ length: 300 }, (_, i) => `  - { id: acc-${i}, token: t }`).join('\n');
    const ok = await runCli(['config', 'check', '--config', file(yaml({ account: accounts }))], {
      env: FULL_ENV,
    });
    expect(ok.stderr).toBe('');
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain('accounts (301):');
    expect(ok.stdout).toContain('  … and 281 more');
    expect(ok.stdout.trim().split('\n').length).toBeLessThan(40);

    const broken = await runCli(
      [
        'config',
        'check',
        '--config',
        file(yaml({ account: accounts.replaceAll('token: t', 'token: t, typo: 1') })),
      ],
      { env: FULL_ENV },
    );
    expect(broken.code).toBe(1);
    const lines = broken.stderr.trim().split('\n');
    expect(lines.length).toBeLessThanOrEqual(51);
    expect(lines.at(-1)).toMatch(/^… and \d+ more problems$/);
  });
});

function problems(text: string, env: NodeJS.ProcessEnv = FULL_ENV): string[] {
  return configProblems(text, env);
}
