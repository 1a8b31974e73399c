import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { formatQuarantineReplay, replayQuarantine } from '../../src/dlq/quarantine.js';
import { UnknownQuarantineEntryError } from '../../src/errors.js';
import { eventsOf, type DeliveryJobData } from '../../src/queue/job.js';
import { quarantineKey, queueName } from '../../src/queue/names.js';
import { eventIdentity } from '../../src/route/event-id.js';
import { redisSuite, testConfig } from '../deliver/fixtures.js';

const redis = redisSuite();
const RECEIVED_AT = 1_795_600_000_000;

function setup() {
  const config = testConfig(
    redis.target(),
    [{ id: 'chats', url: 'http://127.0.0.1:1/hook', events: ['chat message'] }],
    { limits: { maxJsonDepth: 64 } },
  );
  const connection = new Redis(redis.url);
  const queue = new Queue<DeliveryJobData>(queueName('chats'), { connection, prefix: config.redis.prefix });
  redis.defer(async () => {
    await queue.close();
    connection.disconnect();
  });
  const key = quarantineKey(config.redis.prefix);
  const add = (fields: Record<string, string>) =>
    connection.xadd(
      key,
      '*',
      ...Object.entries({ receivedAt: String(RECEIVED_AT), ...fields }).flat(),
    ) as Promise<string>;
  const queued = async () =>
    (await queue.getJobs(['waiting', 'delayed'])).flatMap((job) => eventsOf(job.data));
  return { config, connection, key, add, queued };
}

/** What a base64 socket sends for `value`. */
const wire = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64');
/** The `raw` field of a quarantine entry: base64 of the raw bytes. */
const stored = (text: string) => Buffer.from(text).toString('base64');
const message = { _id: 'm1', room: 'r1', messageType: 'text', messageTimeMS: 5, message: 'hi' };

describe('dlq replay --quarantine', () => {
  it('relays entries that decode now, drops what nobody wants, keeps and explains the rest', async () => {
    const { config, connection, key, add, queued } = setup();
    // Written before rawType existed: a base64 string, read back as one.
    await add({ account: 'audit-bot', event: 'chat message', raw: stored(wire(message)) });
    await add({
      account: 'audit-bot',
      event: 'typing',
      rawType: 'string',
      raw: stored(wire({ room: 'r1' })),
    });
    const lossy = await add({
      account: 'audit-bot',
      event: 'chat message',
      rawType: 'lossy',
      raw: stored('{}'),
    });
    const orphan = await add({ account: 'gone', event: 'chat message', rawType: 'string', raw: stored('x') });

    const result = await replayQuarantine(config);
    expect(result).toEqual({
      replayed: 1,
      unrouted: 1,
      stillFailing: 2,
      reasons: {
        'not replayable: the payload held values JSON cannot carry': 1,
        'account "gone" is not configured': 1,
      },
    });
    const [event] = await queued();
    expect(event).toMatchObject({
      id: eventIdentity('audit-bot', 'chat message', message, RECEIVED_AT, 5_000).id,
      type: 'chat message',
      receivedAt: RECEIVED_AT,
    });
    expect(JSON.parse(event!.body)).toEqual({
      id: event!.id,
      type: 'chat message',
      timestamp: new Date(RECEIVED_AT).toISOString(),
      account: 'audit-bot',
      data: message,
    });
    expect((await connection.xrange(key, '-', '+')).map(([id]) => id)).toEqual([lossy, orphan]);

    const text = formatQuarantineReplay(result, { json: false });
    expect(text).toContain('replayed 1 quarantined payload(s)');
    expect(text).toContain('1 now decode but no destination wants them');
    expect(text).toContain('account "gone" is not configured: 1');
  });

  it('replays one entry by its stream id and refuses an id that is not in the quarantine', async () => {
    const { config, connection, key, add, queued } = setup();
    const first = await add({
      account: 'audit-bot',
      event: 'chat message',
      rawType: 'string',
      raw: stored(wire(message)),
    });
    const second = await add({
      account: 'audit-bot',
      event: 'chat message',
      rawType: 'string',
      raw: stored(wire({ ...message, _id: 'm2' })),
    });
    expect(await replayQuarantine(config, { id: second })).toMatchObject({ replayed: 1, stillFailing: 0 });
    expect((await queued()).map((e) => JSON.parse(e.body).data._id)).toEqual(['m2']);
    expect((await connection.xrange(key, '-', '+')).map(([id]) => id)).toEqual([first]);

    await expect(replayQuarantine(config, { id: second })).rejects.toBeInstanceOf(
      UnknownQuarantineEntryError,
    );
    await expect(replayQuarantine(config, { id: 'evt_abc' })).rejects.toMatchObject({
      code: 'BRIDGE_ERR_DLQ_UNKNOWN_QUARANTINE_ENTRY',
    });
  });
});
