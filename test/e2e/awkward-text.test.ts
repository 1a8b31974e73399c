import { Queue } from 'bullmq';
import { afterEach, beforeEach, expect, test } from 'vitest';
import { eventsOf, type DeliveryJobData } from '../../src/queue/job.js';
import { queueName } from '../../src/queue/names.js';
import { waitFor } from '../support/redis.js';
import { BOT, World, type WebhookBody } from './world.js';

const AWKWARD = [
  'emoji 👩🏽‍💻🚀🇹🇼',
  'quotes " \' ` and backslashes \\ \\\\ \\"',
  'new\nlines\r\nand\ttabs',
  'line separators \u2028 and \u2029',
  'RTL: مرحبا بالعالم עברית',
  'NUL \u0000 inside',
  'lone surrogate-free astral 𝕏𝕐',
  '{"looks":"like json"}',
  '',
];

let world: World;
beforeEach(async () => {
  world = await World.start();
});
afterEach(async () => world.close());

test.each(['base64', 'none'] as const)(
  'hundreds of events with awkward text land in Redis decoded exactly (encoding %s)',
  async (encoding) => {
    const config = world.config({ account: { encoding } });
    await world.bridge(config, 'ingest');
    await world.connected();

    const sent: unknown[] = [];
    for (let i = 0; i < 300; i++) {
      const text = `${AWKWARD[i % AWKWARD.length]} #${i}`;
      const payload =
        i % 3 === 0
          ? { room: `r${i}`, message: text, messageType: 'text', nested: { list: [text, i, null, true] } }
          : { key: `pref-${i}`, data: { value: text } };
      world.sim.emit(BOT, i % 3 === 0 ? 'typing' : 'myPrefChange', payload);
      sent.push(payload);
    }
    world.sim.emit(BOT, 'myPrefDelete', 'bare "string" key 🚀');

    const queue = new Queue<DeliveryJobData>(queueName('audit'), {
      connection: { url: world.redis.url },
      prefix: world.prefix,
    });
    try {
      const events = await waitFor(
        async () => {
          const queued = (await queue.getWaiting(0, -1)).flatMap((job) => eventsOf(job.data));
          return queued.length === 301 ? queued : undefined;
        },
        { timeoutMs: 20_000, what: '301 events in the queue' },
      );
      const bodies = events.map((e) => JSON.parse(e.body) as WebhookBody);
      const data = bodies.filter((b) => b.type !== 'myPrefDelete').map((b) => b.data);
      expect(new Set(data.map((d) => JSON.stringify(d)))).toEqual(
        new Set(sent.map((s) => JSON.stringify(s))),
      );
      expect(bodies.find((b) => b.type === 'myPrefDelete')?.data).toBe('bare "string" key 🚀');
    } finally {
      await queue.close();
    }
  },
);
