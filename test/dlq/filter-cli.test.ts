import { userInfo } from 'node:os';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { quarantineKey } from '../../src/queue/names.js';
import { runCli, writeConfig } from '../support/bridge-process.js';
import { WebhookReceiver } from '../support/receiver.js';
import { waitFor } from '../support/redis.js';
import { SECRET_A, redisSuite, startDelivery, testConfig } from '../deliver/fixtures.js';

const redis = redisSuite();

interface PurgeJson {
  dryRun: boolean;
  destinations: { destination: string; matched: number; removed: number }[];
  matched: number;
  removed: number;
}

/** The pino lines a command wrote to stderr. */
const logLines = (stderr: string) =>
  stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);

describe('dlq list|replay|purge --since --until --type from the command line', () => {
  it('purges only with --yes, replays a filtered set, keeps stdout parseable and audits to stderr', async () => {
    const receiver = await WebhookReceiver.start({ secret: SECRET_A });
    receiver.respondWith({ status: 410 });
    redis.defer(() => receiver.close());
    const target = redis.target();
    const webhook = { id: 'audit', url: receiver.url, secret: SECRET_A };
    const config = testConfig(target, [webhook]);
    const { producer } = startDelivery(config, redis);
    const chat = await producer.add('audit', { type: 'chat message' });
    const typing = await producer.add('audit', { type: 'typing' });
    await waitFor(async () => (await producer.queue('audit').getFailedCount()) === 2, {
      what: 'dead letters',
    });
    const connection = new Redis(redis.url);
    redis.defer(async () => connection.disconnect());
    const t0 = 1_795_600_000_000;
    await connection.xadd(quarantineKey(target.prefix), `${t0}-0`, 'account', 'audit-bot', 'event', 'typing');
    await connection.xadd(
      quarantineKey(target.prefix),
      `${t0 + 1000}-0`,
      'account',
      'audit-bot',
      'event',
      'typing',
    );

    const file = writeConfig({
      redis: target,
      imkit: { url: 'http://127.0.0.1:1', apiKey: 'k' },
      accounts: [{ id: 'audit-bot', token: 'literal-token' }],
      webhooks: [webhook],
    });
    const dlq = (...args: string[]) => runCli(['dlq', ...args, '--config', file]);
    const failed = () => producer.queue('audit').getFailedCount();

    // Relative durations: everything died within the last hour, nothing before it.
    const recent = await dlq('list', '--since', '1h', '--json');
    expect(recent.code, recent.stderr).toBe(0);
    expect(JSON.parse(recent.stdout).destinations[0].total).toBe(2);
    const old = await dlq('list', '--until', '1h');
    expect(old.stdout).toContain('destination audit (http): 0 dead-lettered');
    expect(old.stdout).toMatch(/^matching dead-lettered before \d{4}-/);
    const typed = await dlq('list', '--type', 'typing', '--type', 'read');
    expect(typed.stdout).toContain('destination audit (http): 1 dead-lettered');
    expect(typed.stdout).toContain(typing.id);
    expect(typed.stdout).not.toContain(chat.id);

    // Without --yes: what it would remove, exit 1, nothing removed, no audit line.
    const dry = await dlq('purge', '--type', 'typing');
    expect(dry.code).toBe(1);
    expect(dry.stdout).toContain('destination audit (http): would remove 1');
    expect(dry.stderr).toContain('nothing removed: run it again with --yes to remove these 1 dead letter(s)');
    expect(logLines(dry.stderr)).toEqual([]);
    expect(await failed()).toBe(2);
    const dryJson = await dlq('purge', '--type', 'typing', '--json');
    expect(dryJson.code).toBe(1);
    expect(JSON.parse(dryJson.stdout)).toMatchObject({ dryRun: true, matched: 1, removed: 0 });

    const purge = await dlq('purge', '--type', 'typing', '--since', '1h', '--yes', '--json');
    expect(purge.code, purge.stderr).toBe(0);
    const purged = JSON.parse(purge.stdout) as PurgeJson;
    expect(purged).toMatchObject({ dryRun: false, matched: 1, removed: 1 });
    expect(logLines(purge.stderr)).toEqual([
      expect.objectContaining({
        audit: 'dlq purge',
        who: userInfo().username,
        filter: expect.objectContaining({ types: ['typing'] }),
        removed: 1,
      }),
    ]);
    expect(await failed()).toBe(1);

    // Replay what is left of a window: the chat message is sent again, with its own id.
    receiver.respondWith({ status: 204 });
    const replay = await dlq('replay', '--since', new Date(Date.now() - 60_000).toISOString(), '--json');
    expect(replay.code, replay.stderr).toBe(0);
    expect(JSON.parse(replay.stdout)).toMatchObject({ replayed: 1, failed: 0 });
    expect(logLines(replay.stderr)).toEqual([expect.objectContaining({ audit: 'dlq replay', replayed: 1 })]);
    await waitFor(() => receiver.deliveredIds().includes(chat.id), { what: 'the replayed chat message' });
    expect(receiver.deliveredIds()).not.toContain(typing.id);

    // Quarantine purge by time.
    const qDry = await dlq('purge', '--quarantine', '--until', new Date(t0 + 1000).toISOString());
    expect(qDry.code).toBe(1);
    expect(qDry.stdout).toContain('would remove 1 quarantined payload(s)');
    const q = await dlq('purge', '--quarantine', '--until', new Date(t0 + 1000).toISOString(), '--yes');
    expect(q.code, q.stderr).toBe(0);
    expect(q.stdout).toContain('removed 1 quarantined payload(s)');
    expect((await connection.xrange(quarantineKey(target.prefix), '-', '+')).map(([id]) => id)).toEqual([
      `${t0 + 1000}-0`,
    ]);

    // Refusals: exit 1 with the reason, and nothing touched.
    for (const [args, reason] of [
      [['list', '--since', 'yesterday'], 'since "yesterday" is neither an ISO time'],
      [['purge', '--since', '1h', '--until', '2h', '--yes'], 'must be before until'],
      [['replay', '--id', chat.id, '--type', 'typing'], '--id names one entry'],
      [['purge', '--quarantine', '--destination', 'audit', '--yes'], '--destination does not apply'],
    ] as const) {
      const refused = await dlq(...args);
      expect(refused.code, args.join(' ')).toBe(1);
      expect(refused.stderr).toContain(reason);
    }
    expect(await connection.xlen(quarantineKey(target.prefix))).toBe(1);
  });
});
