import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { configProblems } from './problems.js';

const BASE = `
redis: { url: "redis://127.0.0.1:6379", prefix: ib }
imkit: { url: "https://x.imkit.io" }
accounts: [{ id: bot, token: t }]
`;

describe('destinations: config', () => {
  it('gives broker destinations 512 sends in flight by default, webhooks 16', () => {
    const config = parseConfig(
      `${BASE}webhooks: [{ id: w, url: "https://example.com/hook" }]
destinations: [{ id: a, type: nats, url: "nats://127.0.0.1:4222" }]
`,
      {},
    );
    expect(config.webhooks[0]!.concurrency).toBe(16);
    expect(config.destinations[0]!.concurrency).toBe(512);
  });

  it('accepts one entry of every broker type with their defaults', () => {
    expect(
      configProblems(`${BASE}destinations:
  - { id: a, type: nats, url: "nats://127.0.0.1:4222" }
  - { id: b, type: amqp, url: "amqp://guest:guest@127.0.0.1:5672/", exchange: imkit }
  - { id: c, type: redis-stream }
  - { id: d, type: bullmq, queue: jobs }
`),
    ).toEqual([]);
  });

  it("keeps a destination on the bridge's own Redis out of the bridge's keys", () => {
    expect(
      configProblems(`${BASE}destinations:
  - { id: c, type: redis-stream, stream: "ib:events" }
  - { id: d, type: bullmq, queue: jobs, prefix: ib }
  - { id: e, type: redis-stream, url: "redis://elsewhere:6379", stream: "ib:events" }
`),
    ).toEqual([
      'destinations[0].stream: must not start with "ib:" on the bridge\'s own Redis (the bridge\'s keys live there)',
      'destinations[1].prefix: must differ from redis.prefix ("ib") on the bridge\'s own Redis',
    ]);
  });

  it('names an unknown type and a bad template by field', () => {
    expect(
      configProblems(`${BASE}destinations:
  - { id: k, type: kafka }
  - { id: n, type: nats, url: "nats://127.0.0.1:4222", subject: "imkit.{acount}" }
`),
    ).toEqual([
      'destinations[0].type: must be one of nats, amqp, redis-stream, bullmq; http destinations go under webhooks:',
      'destinations[1].subject: unknown placeholder {acount} (use {account}, {type}, {room})',
    ]);
  });
});
