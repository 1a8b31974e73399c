import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Daemon } from '../../src/lifecycle/daemon.js';
import { testConfig, silentDeps } from '../deliver/fixtures.js';
import { BridgeProcess, runCli, writeConfig } from '../support/bridge-process.js';
import { RedisServer, freePort, waitFor } from '../support/redis.js';

/** An operator reads /readyz and the CLI to find out what is wrong: they must name the Redis error. */
let redis: RedisServer;
const PASSWORD = 'correct-horse';

beforeAll(async () => {
  redis = await RedisServer.start();
  const admin = new Redis(redis.url);
  await admin.config('SET', 'requirepass', PASSWORD);
  admin.disconnect();
});
afterAll(async () => {
  await redis.close();
});

function withPassword(password: string | undefined): string {
  return password === undefined ? redis.url : `redis://:${password}@127.0.0.1:${redis.port}`;
}

async function readinessReasons(url: string): Promise<string[]> {
  const config = testConfig({ url, prefix: 'diag' }, [{ id: 'hook', url: 'http://127.0.0.1:1/hook' }], {
    server: { host: '127.0.0.1', port: 0 },
    shutdownTimeout: '1s',
  });
  const daemon = await Daemon.start(config, 'worker', silentDeps().logger);
  try {
    // The first check can race the first connection attempt; the cause is known once it failed once.
    return await waitFor(
      async () => {
        const res = await fetch(`http://127.0.0.1:${daemon.adminPort}/readyz`);
        const body = (await res.json()) as { reasons: string[] };
        expect(res.status).toBe(503);
        return body.reasons.some((r) => /[A-Z]{4,}/.test(r)) ? body.reasons : undefined;
      },
      { timeoutMs: 10_000, what: 'a readiness reason naming the cause' },
    );
  } finally {
    await daemon.close();
  }
}

describe('readiness names the Redis error', () => {
  it('WRONGPASS for a wrong password', async () => {
    const reasons = await readinessReasons(withPassword('wrong'));
    expect(reasons.join('\n')).toMatch(/^redis: .*WRONGPASS/m);
  });

  it('NOAUTH when no password is given', async () => {
    const reasons = await readinessReasons(withPassword(undefined));
    expect(reasons.join('\n')).toMatch(/^redis: .*NOAUTH/m);
  });

  it('ECONNREFUSED and the address for a closed port', async () => {
    const port = await freePort();
    const reasons = await readinessReasons(`redis://127.0.0.1:${port}`);
    expect(reasons.join('\n')).toMatch(new RegExp(`^redis: .*ECONNREFUSED 127\\.0\\.0\\.1:${port}`, 'm'));
  });
});

it('a wrong Redis password never reaches the logs, even at debug level', async () => {
  const secret = 'wrong-but-still-a-secret';
  const file = writeConfig({
    redis: { url: withPassword(secret), prefix: 'diag-leak' },
    server: { host: '127.0.0.1', port: 0 },
    imkit: { url: 'http://127.0.0.1:1' },
    accounts: [{ id: 'bot', token: 'literal-token' }],
    webhooks: [{ id: 'hook', url: 'http://127.0.0.1:1/hook' }],
    log: { level: 'debug' },
  });
  const bridge = await BridgeProcess.start(file, { role: 'worker' });
  try {
    // ioredis attaches the AUTH command's arguments to the error it emits; pino must not print them.
    await waitFor(() => bridge.logs.some((l) => l.includes('WRONGPASS')), { what: 'a WRONGPASS log line' });
    expect(bridge.logs.join('\n')).not.toContain(secret);
  } finally {
    await bridge.stop('SIGKILL');
  }
});

describe('dlq commands against a Redis they cannot use', () => {
  async function dlq(command: 'list' | 'replay', url: string) {
    const file = writeConfig({
      redis: { url },
      imkit: { url: 'http://127.0.0.1:1', apiKey: 'k' },
      accounts: [{ id: 'bot', token: 'literal-token' }],
      webhooks: [{ id: 'hook', url: 'http://127.0.0.1:1/hook' }],
    });
    const started = Date.now();
    const result = await runCli(['dlq', command, '--config', file], { timeoutMs: 20_000 });
    return { ...result, ms: Date.now() - started };
  }

  it('exit 2 within seconds with one line naming ECONNREFUSED', async () => {
    const port = await freePort();
    for (const command of ['list', 'replay'] as const) {
      const { code, stdout, stderr, ms } = await dlq(command, `redis://127.0.0.1:${port}`);
      expect(code, stderr).toBe(2);
      expect(ms).toBeLessThan(10_000);
      expect(stdout).toBe('');
      expect(stderr.trim().split('\n')).toEqual([
        `fatal: cannot use Redis at redis://127.0.0.1:${port}: connect ECONNREFUSED 127.0.0.1:${port}`,
      ]);
    }
  });

  it('exit 2 naming WRONGPASS, without echoing the password', async () => {
    const { code, stderr } = await dlq('list', withPassword('wrong-secret'));
    expect(code, stderr).toBe(2);
    expect(stderr.trim().split('\n')).toHaveLength(1);
    expect(stderr).toMatch(/WRONGPASS/);
    expect(stderr).not.toContain('wrong-secret');
  });
});
