import { afterAll, beforeAll, expect, test } from 'vitest';
import { Redis } from 'ioredis';
import { RedisServer } from './redis.js';

let server: RedisServer;
beforeAll(async () => {
  server = await RedisServer.start();
});
afterAll(async () => server.close());

// The durability tests lean on this: what Redis acknowledged survives a crash of Redis itself.
test('a private redis keeps acknowledged writes across an abrupt restart (AOF)', async () => {
  const client = new Redis(server.url, { maxRetriesPerRequest: 1 });
  await client.set('k', 'v');
  client.disconnect();
  await server.restart({ kill9: true });
  const again = new Redis(server.url);
  expect(await again.get('k')).toBe('v');
  again.disconnect();
});
