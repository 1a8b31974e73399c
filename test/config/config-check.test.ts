import { describe, expect, test } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { runCli } from '../support/bridge-process.js';
import { configFile as file, configProblems as problems } from './problems.js';

const SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
const VALID = `
redis: { url: redis://127.0.0.1:6379 }
imkit: { url: https://app.imkit.io, apiKey: '\${env:IMKIT_API_KEY:-k}' }
accounts:
  - id: audit-bot
    token: \${env:AUDIT_BOT_TOKEN}
webhooks:
  - id: audit
    url: https://audit.example.com/imkit?key=query-secret
    secret: \${env:AUDIT_SECRET}
`;

describe('config', () => {
  test('defaults fill in, durations become milliseconds, env references resolve, and the result is frozen', () => {
    const config = parseConfig(VALID, { AUDIT_BOT_TOKEN: 'tok-123', AUDIT_SECRET: SECRET });
    expect(config.accounts[0]).toMatchObject({
      token: 'tok-123',
      deviceId: 'imkit-bridge-audit-bot',
      encoding: 'base64',
      events: ['*'],
      heartbeatTimeout: 30_000,
      catchUp: true,
    });
    expect(config.webhooks[0]!.retry.schedule).toEqual([
      5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 36_000_000,
    ]);
    expect(config.imkit.apiKey).toBe('k');
    expect(config.redis.prefix).toBe('imkit-bridge');
    expect(config.dedupWindow).toBe(600_000);
    expect(Object.isFrozen(config.webhooks[0]!.retry.schedule)).toBe(true);
    expect(() => ((config.accounts[0] as { token: string }).token = 'x')).toThrow(TypeError);
  });

  test('every problem is reported with its field path, in one pass', () => {
    const lines = problems(
      `
redis: { url: http://wrong }
imkit: { url: https://app.imkit.io }
accounts:
  - id: a
    token: t
    tokenFile: /x
    encoding: rot13
    heartbeatTimeout: soon
    evnets: ["*"]
  - id: a
    issueToken: true
webhooks:
  - id: w
    url: https://h/x
    secret: not-a-secret
    accounts: [ghost]
    retry: { schedule: [1s, later] }
dedupWindw: 5m
`,
    );
    expect(lines).toEqual(
      expect.arrayContaining([
        'redis.url: must be a redis:// or rediss:// URL',
        expect.stringMatching(/^accounts\[0\]\.token: exactly one of token, tokenFile or issueToken/),
        expect.stringMatching(/^accounts\[0\]\.encoding: /),
        expect.stringMatching(/^accounts\[0\]\.heartbeatTimeout: not a duration/),
        'accounts[0].evnets: unknown key',
        'accounts[1].id: duplicate account id "a"',
        'accounts[1].issueToken: needs imkit.apiKey to issue tokens',
        expect.stringMatching(/^webhooks\[0\]\.secret: must be whsec_/),
        'webhooks[0].accounts[0]: no account has id "ghost"',
        expect.stringMatching(/^webhooks\[0\]\.retry\.schedule\[1\]: not a duration/),
        'dedupWindw: unknown key',
      ]),
    );
  });

  test('destination ids are unique across webhooks and destinations; an unknown type lists the known ones', () => {
    const lines = problems(
      `
redis: { url: redis://127.0.0.1:6379 }
imkit: { url: https://app.imkit.io }
accounts:
  - id: a
    token: t
webhooks:
  - id: audit
    url: https://h/x
  - id: audit
    url: https://h/y
destinations:
  - id: audit
    type: kafka
    accounts: [ghost]
`,
    );
    expect(lines).toEqual(
      expect.arrayContaining([
        'webhooks[1].id: duplicate destination id "audit" (also webhooks[0].id)',
        'destinations[0].id: duplicate destination id "audit" (also webhooks[0].id)',
        'destinations[0].accounts[0]: no account has id "ghost"',
        expect.stringMatching(
          /^destinations\[0\]\.type: must be one of .*; http destinations go under webhooks:$/,
        ),
      ]),
    );
  });

  test('an unset variable names itself instead of passing as an empty string', () => {
    expect(problems(VALID, { AUDIT_SECRET: SECRET })).toEqual([
      'accounts[0].token: ${env:AUDIT_BOT_TOKEN} is not set',
    ]);
  });

  test('broken YAML is reported with its line, not a stack trace', () => {
    expect(problems('redis:\n  url: [unclosed\n')).toEqual([expect.stringMatching(/^config:\d+:\d+: /)]);
  });
});

describe('imkit-bridge config check', () => {
  test('a valid file exits 0 with a summary that names routes but shows no secret', async () => {
    const path = file(VALID);
    const result = await runCli(['config', 'check', '--config', path], {
      env: { AUDIT_BOT_TOKEN: 'tok-secret-value', AUDIT_SECRET: SECRET },
    });
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('audit-bot: static token, encoding base64');
    expect(result.stdout).toContain('audit (http): https://audit.example.com/imkit, signed (1 secret)');
    for (const secret of ['tok-secret-value', SECRET, 'query-secret'])
      expect(result.stdout).not.toContain(secret);
  });

  test('the summary says whether the console is on, and for how long a login lasts, never the admin token', async () => {
    const off = await runCli(['config', 'check', '--config', file(VALID)], {
      env: { AUDIT_BOT_TOKEN: 't', AUDIT_SECRET: SECRET },
    });
    expect(off.stdout).toContain('/status open, console off (set server.adminToken)');
    const token = 'admin-token-value-0123456789';
    const on = await runCli(
      [
        'config',
        'check',
        '--config',
        file(`${VALID}server: { adminToken: '${token}', sessionTimeout: 30m }\n`),
      ],
      { env: { AUDIT_BOT_TOKEN: 't', AUDIT_SECRET: SECRET } },
    );
    expect(on.code, on.stderr).toBe(0);
    expect(on.stdout).toContain('/status needs the admin token, console on at / (sessions last 30m)');
    expect(on.stdout).not.toContain(token);
    const short = await runCli(
      ['config', 'check', '--config', file(`${VALID}server: { sessionTimeout: 5s }\n`)],
      {
        env: { AUDIT_BOT_TOKEN: 't', AUDIT_SECRET: SECRET },
      },
    );
    expect(short.code).toBe(1);
    expect(short.stderr + short.stdout).toContain('server.sessionTimeout');
  });

  test('a broken file exits 1 with one line per problem naming the field and no stack trace', async () => {
    const path = file(`redis: { url: redis://x }\nimkit: { url: nope }\naccounts: []\ntypo: 1\n`);
    const result = await runCli(['config', 'check', '--config', path]);
    expect(result.code).toBe(1);
    expect(result.stderr.trim().split('\n').sort()).toEqual([
      'accounts: configure at least one account',
      'imkit.url: must be an http:// or https:// URL',
      'typo: unknown key',
    ]);
    expect(result.stderr).not.toMatch(/\n\s+at /);
  });

  test('the config file comes from $IMKIT_BRIDGE_CONFIG when --config is absent', async () => {
    const path = file(VALID);
    const result = await runCli(['config', 'check'], {
      env: { IMKIT_BRIDGE_CONFIG: path, AUDIT_BOT_TOKEN: 't', AUDIT_SECRET: SECRET },
    });
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(`${path}: ok`);
  });

  test('a missing file and an unknown command are usage errors (exit 1)', async () => {
    expect((await runCli(['config', 'check', '--config', '/nonexistent/bridge.yaml'])).code).toBe(1);
    const unknown = await runCli(['frobnicate']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('unknown command "frobnicate"');
  });

  test('the shipped example config is valid', async () => {
    const result = await runCli(['config', 'check', '--config', 'config/bridge.yaml'], {
      env: { AUDIT_BOT_TOKEN: 't', AUDIT_WEBHOOK_SECRET: SECRET },
    });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
  });

  test('a custom codec is loaded by config check: a wrong path or a missing key exits 1 naming the field', async () => {
    const custom = (codec: string) =>
      file(
        VALID.replace(
          '    token: ${env:AUDIT_BOT_TOKEN}',
          `    token: t\n    encoding: custom\n    codec: ${codec}`,
        ),
      );
    const env = { AUDIT_SECRET: SECRET, IMKIT_CODEC_KEY: Buffer.alloc(32, 7).toString('base64') };

    const ok = await runCli(['config', 'check', '--config', custom('examples/codecs/aes-gcm.mjs')], { env });
    expect(ok.stderr).toBe('');
    expect(ok.code).toBe(0);

    const missing = await runCli(['config', 'check', '--config', custom('./no/such/codec.mjs')], { env });
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^accounts\[0\]\.codec: cannot load codec/);

    const noKey = await runCli(['config', 'check', '--config', custom('examples/codecs/aes-gcm.mjs')], {
      env: { ...env, IMKIT_CODEC_KEY: '' },
    });
    expect(noKey.code).toBe(1);
    expect(noKey.stderr).toMatch(/^accounts\[0\]\.codec: /);
  });
});
