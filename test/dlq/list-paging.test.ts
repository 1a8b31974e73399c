import { UnrecoverableError, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { quarantineKey, queueName } from '../../src/queue/names.js';
import { runCli, writeConfig } from '../support/bridge-process.js';
import { waitFor } from '../support/redis.js';
import { TestProducer, redisSuite, testConfig } from '../deliver/fixtures.js';

const redis = redisSuite();

interface ListJson {
  offset: number;
  destinations: { destination: string; total: number; entries: { jobId: string }[] }[];
  quarantine: { total: number; entries: { streamId: string }[] };
}

describe('dlq list with more entries than a screen', () => {
  it('pages the text with --limit/--offset and exports every entry with --json', async () => {
    const target = redis.target();
    const config = testConfig(target, [{ id: 'bulk', url: 'http://127.0.0.1:1/hook' }]);
    const producer = new TestProducer(config);
    const connection = new Redis(redis.url, { maxRetriesPerRequest: null });
    redis.defer(async () => {
      await producer.close();
      connection.disconnect();
    });
    const dead = 250;
    await Promise.all(Array.from({ length: dead }, () => producer.add('bulk')));
    const worker = new Worker(
      queueName('bulk'),
      async () => {
        throw new UnrecoverableError('HTTP 410 Gone');
      },
      { connection, prefix: target.prefix, concurrency: 50 },
    );
    await waitFor(async () => (await producer.queue('bulk').getFailedCount()) === dead, {
      what: 'dead letters',
    });
    await worker.close();
    // More than one page of the stream (500), so reading past the first page is exercised.
    const quarantined = 620;
    const pipeline = connection.pipeline();
    for (let i = 0; i < quarantined; i++) {
      pipeline.xadd(quarantineKey(target.prefix), '*', 'account', 'audit-bot', 'event', `e${i}`, 'size', '1');
    }
    await pipeline.exec();

    const file = writeConfig({
      redis: target,
      imkit: { url: 'http://127.0.0.1:1', apiKey: 'k' },
      accounts: [{ id: 'audit-bot', token: 'literal-token' }],
      webhooks: [{ id: 'bulk', url: 'http://127.0.0.1:1/hook' }],
    });
    const dlq = async (...args: string[]) => {
      const result = await runCli(['dlq', 'list', '--config', file, ...args]);
      expect(result.code, result.stderr).toBe(0);
      return result.stdout;
    };
    const rows = (text: string, header: string) => {
      const lines = text.split('\n');
      const start = lines.findIndex((l) => l.trim().startsWith(header));
      const end = lines.findIndex((l, i) => i > start && !l.startsWith('  '));
      return lines.slice(start + 1, end === -1 ? undefined : end);
    };

    const first = await dlq();
    expect(first).toContain(
      'destination bulk (http): 250 dead-lettered (showing 1-100, newest first; 150 more: --offset 100)',
    );
    expect(rows(first, 'EVENT ID')).toHaveLength(100);
    expect(first).toContain(
      'quarantine: 620 payload(s) that could not be decoded (showing 1-100, newest first; 520 more: --offset 100)',
    );

    const last = await dlq('--offset', '200');
    expect(last).toContain('destination bulk (http): 250 dead-lettered (showing 201-250, newest first)');
    expect(rows(last, 'EVENT ID')).toHaveLength(50);

    const all = JSON.parse(await dlq('--json')) as ListJson;
    expect(all.destinations[0]!.total).toBe(dead);
    expect(new Set(all.destinations[0]!.entries.map((e) => e.jobId)).size).toBe(dead);
    expect(all.quarantine.total).toBe(quarantined);
    const streamIds = all.quarantine.entries.map((e) => e.streamId);
    expect(new Set(streamIds).size).toBe(quarantined);
    const newestFirst = (a: string, b: string) => {
      const [am, as] = a.split('-').map(BigInt) as [bigint, bigint];
      const [bm, bs] = b.split('-').map(BigInt) as [bigint, bigint];
      return am === bm ? Number(bs - as) : Number(bm - am);
    };
    expect([...streamIds].sort(newestFirst)).toEqual(streamIds);

    const page = JSON.parse(await dlq('--json', '--limit', '30', '--offset', '590')) as ListJson;
    expect(page.offset).toBe(590);
    expect(page.destinations[0]!.entries).toHaveLength(0);
    expect(page.quarantine.entries.map((e) => e.streamId)).toEqual(streamIds.slice(590, 620));

    const bad = await runCli(['dlq', 'list', '--config', file, '--limit', '0']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('--limit takes a whole number of at least 1');
  });
});
