import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { summarizeConfig } from '../../src/config/summary.js';
import { destinationsOf } from '../../src/config/destinations.js';
import { keySlot, redisSettings } from '../../src/queue/redis.js';
import { runCli } from '../support/bridge-process.js';
import { configFile, configProblems } from './problems.js';

const dir = mkdtempSync(join(tmpdir(), 'imkit-bridge-redis-config-'));
const pem = (name: string) => {
  const path = join(dir, name);
  writeFileSync(path, `-----BEGIN CERTIFICATE-----\n${name}\n-----END CERTIFICATE-----\n`);
  return path;
};
const CA = pem('ca.pem');
const CERT = pem('client.pem');
const KEY = pem('client.key');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const REST = `
imkit: { url: https://app.imkit.io }
accounts: [{ id: bot, token: t }]
webhooks:
  - { id: audit, url: https://audit.example.com/in }
  - { id: crm, url: https://crm.example.com/in }
`;

const withRedis = (redis: string) => `redis: ${redis}\n${REST}`;

describe('redis topologies in the config', () => {
  test.each([
    [
      '{ url: redis://a:6379, sentinels: [redis://s:26379], name: m }',
      'redis: exactly one of url, sentinels or cluster is required (found url and sentinels)',
    ],
    ['{ prefix: x }', 'redis: exactly one of url, sentinels or cluster is required (found none)'],
    [
      '{ sentinels: [redis://s:26379] }',
      "redis.name: is required with sentinels: the master's name the sentinels know",
    ],
    ['{ url: redis://a:6379, name: m }', 'redis.name: is only used with sentinels'],
    [
      '{ sentinels: [redis://s1:26379, rediss://s2:26379], name: m }',
      'redis.sentinels: mixes redis:// and rediss://; use one scheme for every node',
    ],
    ['{ cluster: [redis://n1:6379/2] }', 'redis.cluster[0]: takes no /db: a cluster has only database 0'],
    [
      '{ cluster: [redis://:one@n1:6379], password: two }',
      'redis.cluster: carries credentials that differ from redis.password; set the password once, in redis.password',
    ],
    [
      `{ url: redis://a:6379, tls: { ca: ${CA} } }`,
      'redis.tls: needs rediss:// URLs (TLS is chosen by the scheme)',
    ],
    [
      `{ url: rediss://a:6379, tls: { cert: ${CERT} } }`,
      'redis.tls.key: cert and key come together (a client certificate)',
    ],
    [
      `{ url: rediss://a:6379, tls: { ca: ${join(dir, 'missing.pem')} } }`,
      `redis.tls.ca: cannot read ${join(dir, 'missing.pem')} (ENOENT)`,
    ],
    ['{ url: redis://a:6379, waitReplicas: 6 }', 'redis.waitReplicas: Too big: expected number to be <=5'],
    ['{ url: redis://a:6379, waitTimeout: 5s }', 'redis.waitTimeout: must be between 10ms and 2s'],
  ])('%s is refused: %s', (redis, problem) => {
    expect(configProblems(withRedis(redis))).toContain(problem);
  });

  test('sentinel settings: password for data nodes and sentinels, TLS files read at load, described without secrets', () => {
    const config = parseConfig(
      withRedis(
        `{ sentinels: [rediss://s1:26379, rediss://s2:26379, rediss://s3:26379], name: mymaster, password: "\${env:REDIS_PASSWORD}", tls: { ca: ${CA}, cert: ${CERT}, key: ${KEY} }, waitReplicas: 1 }`,
      ),
      { REDIS_PASSWORD: 'hunter2-secret' },
    );
    const settings = redisSettings(config.redis);
    expect(settings).toMatchObject({
      topology: 'sentinel',
      name: 'mymaster',
      password: 'hunter2-secret',
      waitReplicas: 1,
      waitTimeoutMs: 500,
      addresses: [
        { host: 's1', port: 26379 },
        { host: 's2', port: 26379 },
        { host: 's3', port: 26379 },
      ],
    });
    expect(settings.tls?.ca).toContain('ca.pem');
    expect(settings.tls?.key).toContain('client.key');
    expect(settings.describe()).toBe(
      'sentinel "mymaster" via 3 sentinels (s1:26379, s2:26379, s3:26379) (TLS, password set), waitReplicas 1 within 500ms',
    );
    const summary = summarizeConfig(config, 'bridge.yaml');
    expect(summary).toContain('redis: sentinel "mymaster" via 3 sentinels');
    expect(summary).not.toContain('hunter2-secret');
    expect(summary).not.toContain('BEGIN CERTIFICATE');
  });

  test('a password in redis.password overrides the URL; the URL keeps a single server as before', () => {
    const config = parseConfig(withRedis('{ url: "redis://:old@10.0.0.5:6380/2", password: new }'), {});
    expect(redisSettings(config.redis)).toMatchObject({
      topology: 'single',
      addresses: [{ host: '10.0.0.5', port: 6380 }],
      db: 2,
      password: 'new',
    });
    expect(summarizeConfig(config, 'f')).toContain(
      'redis: redis://10.0.0.5:6380/2 (password set) (prefix "imkit-bridge")',
    );
    expect(destinationsOf(config).map((d) => d.jobQueue)).toEqual(['webhook-audit', 'webhook-crm']);
  });

  test('on Cluster every queue is a hash tag and config check prints each destination slot', () => {
    const config = parseConfig(withRedis('{ cluster: [redis://n1:7000, redis://n2:7001] }'), {});
    expect(destinationsOf(config).map((d) => d.jobQueue)).toEqual(['{webhook-audit}', '{webhook-crm}']);
    const summary = summarizeConfig(config, 'f');
    expect(summary).toContain('redis: cluster via 2 seed nodes (n1:7000, n2:7001)');
    expect(summary).toContain(
      `destination queues: audit→slot ${keySlot('webhook-audit')}, crm→slot ${keySlot('webhook-crm')}`,
    );
  });

  test("a bullmq destination on the bridge's cluster needs a hash tag in its prefix or queue", () => {
    const withBullmq = (target: string) =>
      `${withRedis('{ cluster: [redis://n1:7000] }')}destinations: [{ id: jobs, type: bullmq, ${target} }]\n`;
    expect(configProblems(withBullmq('queue: jobs'))).toEqual([
      'destinations[0].prefix: needs a hash tag on the bridge\'s Redis Cluster, e.g. "{bull}", so the queue\'s keys share a slot',
    ]);
    expect(configProblems(withBullmq('queue: jobs, prefix: "{bull}"'))).toEqual([]);
    expect(configProblems(withBullmq('queue: "{jobs}"'))).toEqual([]);
    expect(configProblems(withBullmq('queue: jobs, url: redis://elsewhere:6379'))).toEqual([]);
  });

  test('config check with a missing tls.ca file exits 1 naming redis.tls.ca', async () => {
    const missing = join(dir, 'nowhere', 'ca.pem');
    const result = await runCli([
      'config',
      'check',
      '--config',
      configFile(withRedis(`{ url: rediss://127.0.0.1:6379, tls: { ca: ${missing} } }`)),
    ]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`redis.tls.ca: cannot read ${missing} (ENOENT)`);
  });
});
