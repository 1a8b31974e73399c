import { Webhook } from 'standardwebhooks';
import { describe, expect, it } from 'vitest';
import type { BridgeConfig } from '../../src/config/schema.js';
import { USER_AGENT } from '../../src/version.js';
import { WebhookReceiver } from '../support/receiver.js';
import { waitFor } from '../support/redis.js';
import type { BridgeMetrics } from '../../src/admin/metrics.js';
import { SECRET_A, SECRET_B, redisSuite, startDelivery, testConfig } from './fixtures.js';

const redis = redisSuite();

async function setup(webhook: Record<string, unknown>, receiverSecret?: string) {
  const receiver = await WebhookReceiver.start({ secret: receiverSecret });
  redis.defer(() => receiver.close());
  const config: BridgeConfig = testConfig(redis.target(), [{ id: 'hook', url: receiver.url, ...webhook }]);
  return { receiver, config, ...startDelivery(config, redis) };
}

async function counter(metrics: BridgeMetrics, outcome: string): Promise<number> {
  const values = (await metrics.deliveries.get()).values;
  return values.find((v) => v.labels.outcome === outcome)?.value ?? 0;
}

describe('webhook request', () => {
  it('is signed per Standard Webhooks, carries the exact job body and the SPEC headers', async () => {
    const { receiver, producer, metrics } = await setup(
      { secret: SECRET_A, headers: { 'x-tenant': 'acme' } },
      SECRET_A,
    );
    const job = await producer.add('hook');
    const [req] = await waitFor(() => (receiver.requests.length === 1 ? receiver.requests : undefined), {
      what: 'one request',
    });
    expect(req!.verified).toBe(true);
    expect(req!.method).toBe('POST');
    expect(req!.url).toBe('/hook');
    expect(req!.body).toBe(job.body);
    expect(req!.headers['content-type']).toBe('application/json');
    expect(req!.headers['user-agent']).toBe(USER_AGENT);
    expect(req!.headers['webhook-id']).toBe(job.id);
    expect(req!.headers['x-tenant']).toBe('acme');
    const ts = Number(req!.headers['webhook-timestamp']);
    expect(Math.abs(ts - Date.now() / 1000)).toBeLessThan(5);
    await waitFor(
      async () =>
        (await metrics.eventLatency.get()).values.some(
          (v) => v.metricName?.endsWith('_count') && v.value === 1,
        ),
      {
        what: 'latency observed',
      },
    );
    const duration = (await metrics.deliveryDuration.get()).values.find((v) =>
      v.metricName?.endsWith('_count'),
    );
    expect(duration?.value).toBe(1);
    // The standardwebhooks verifier itself returns the parsed payload of the exact bytes.
    expect(new Webhook(SECRET_A).verify(req!.body, req!.headers as Record<string, string>)).toEqual(
      JSON.parse(job.body),
    );
  });

  it('sends credentials from the webhook URL as Basic authorization, and not in the request line', async () => {
    const receiver = await WebhookReceiver.start();
    redis.defer(() => receiver.close());
    const url = receiver.url.replace('http://', 'http://audit%40corp:pa%3Ass@');
    const { producer } = startDelivery(testConfig(redis.target(), [{ id: 'hook', url }]), redis);
    await producer.add('hook');
    const [req] = await waitFor(() => (receiver.requests.length === 1 ? receiver.requests : undefined));
    expect(req!.headers.authorization).toBe(`Basic ${Buffer.from('audit@corp:pa:ss').toString('base64')}`);
    expect(req!.url).toBe('/hook');
  });

  it('signs with every secret during key rotation, so a verifier holding either one accepts', async () => {
    const { receiver, producer } = await setup({ secret: [SECRET_A, SECRET_B] });
    await producer.add('hook');
    const [req] = await waitFor(() => (receiver.requests.length === 1 ? receiver.requests : undefined));
    const headers = req!.headers as Record<string, string>;
    expect(headers['webhook-signature']!.split(' ')).toHaveLength(2);
    expect(() => new Webhook(SECRET_A).verify(req!.body, headers)).not.toThrow();
    expect(() => new Webhook(SECRET_B).verify(req!.body, headers)).not.toThrow();
    const stranger = `whsec_${Buffer.alloc(32, 7).toString('base64')}`;
    expect(() => new Webhook(stranger).verify(req!.body, headers)).toThrow();
  });
});

describe('outcomes', () => {
  it('retries 500s on the schedule with the same webhook-id, then delivers', async () => {
    const { receiver, producer, metrics } = await setup({ secret: SECRET_A }, SECRET_A);
    receiver.enqueue({ status: 500 }, { status: 500 });
    const job = await producer.add('hook');
    await waitFor(() => receiver.deliveredIds().includes(job.id), { what: 'delivery after 500s' });
    const reqs = receiver.requestsFor(job.id);
    expect(reqs.map((r) => r.status)).toEqual([500, 500, 204]);
    expect(reqs.every((r) => r.verified)).toBe(true);
    expect(reqs[1]!.at - reqs[0]!.at).toBeGreaterThanOrEqual(90);
    expect(reqs[2]!.at - reqs[1]!.at).toBeGreaterThanOrEqual(190);
    await waitFor(async () => (await counter(metrics, 'delivered')) === 1, { what: 'delivered metric' });
    expect(await counter(metrics, 'retry')).toBe(2);
    // Completed jobs are removed (removeOnComplete): nothing is left behind in any state.
    await producer.waitEmpty('hook');
  });

  it('honours Retry-After on 429: waits at least that long, more than the schedule asks', async () => {
    const { receiver, producer } = await setup({ retry: { schedule: ['100ms', '3s'], jitter: 0 } });
    receiver.enqueue({ status: 429, headers: { 'retry-after': '1' } });
    const job = await producer.add('hook');
    await waitFor(() => receiver.deliveredIds().includes(job.id), { what: 'delivery after 429' });
    const [first, second] = receiver.requestsFor(job.id);
    expect(second!.at - first!.at).toBeGreaterThanOrEqual(1000);
    expect(second!.at - first!.at).toBeLessThan(2500);
  });

  it('caps Retry-After at the longest scheduled wait (HTTP-date form, 503)', async () => {
    const { receiver, producer } = await setup({ retry: { schedule: ['100ms', '300ms'], jitter: 0 } });
    receiver.enqueue({
      status: 503,
      headers: { 'retry-after': new Date(Date.now() + 60_000).toUTCString() },
    });
    const job = await producer.add('hook');
    await waitFor(() => receiver.deliveredIds().includes(job.id), { what: 'delivery after 503' });
    const [first, second] = receiver.requestsFor(job.id);
    expect(second!.at - first!.at).toBeGreaterThanOrEqual(290);
    expect(second!.at - first!.at).toBeLessThan(2000);
  });

  it('retries a receiver that hangs past the timeout', async () => {
    const { receiver, producer, workers } = await setup({ timeout: '300ms' });
    receiver.enqueue({ hang: true });
    const job = await producer.add('hook');
    await waitFor(() => receiver.deliveredIds().includes(job.id), { what: 'delivery after a timeout' });
    const [first, second] = receiver.requestsFor(job.id);
    expect(second!.at - first!.at).toBeGreaterThanOrEqual(300 + 90);
    expect(workers.status()[0]!.lastError?.message).toBe('timeout after 300 ms');
  });

  it('cuts off a response whose body trickles in past the timeout, then retries', async () => {
    const { receiver, producer, workers } = await setup({ timeout: '400ms' });
    receiver.enqueue({ status: 200, slowBodyMs: 50 });
    const job = await producer.add('hook');
    await waitFor(() => receiver.requestsFor(job.id).length === 2, { what: 'retry after slow body' });
    const [first, second] = receiver.requestsFor(job.id);
    expect(second!.at - first!.at).toBeGreaterThanOrEqual(400);
    expect(second!.at - first!.at).toBeLessThan(1500);
    expect(workers.status()[0]!.lastError?.message).toBe('timeout after 400 ms');
    await waitFor(() => receiver.deliveredIds().includes(job.id));
  });

  it('does not follow redirects: a 302 is retried like any non-2xx', async () => {
    const { receiver, producer, workers } = await setup({});
    receiver.enqueue({ status: 302, headers: { location: '/elsewhere' } });
    const job = await producer.add('hook');
    await waitFor(() => receiver.deliveredIds().includes(job.id), { what: 'delivery after 302' });
    expect(receiver.requests.map((r) => r.url)).toEqual(['/hook', '/hook']);
    expect(workers.status()[0]!.lastError?.message).toBe('HTTP 302');
  });

  it('rides out a receiver outage (stopped, then listening again on the same port)', async () => {
    const { receiver, producer, workers } = await setup({
      retry: { schedule: ['300ms', '300ms', '300ms', '300ms'], jitter: 0 },
    });
    await receiver.stop();
    const job = await producer.add('hook');
    await waitFor(() => workers.status()[0]!.lastError?.message.includes('ECONNREFUSED'), {
      what: 'refused attempt',
    });
    await receiver.listen();
    await waitFor(() => receiver.deliveredIds().includes(job.id), { what: 'delivery after the outage' });
  });

  it('retries network errors (connection dropped mid-request)', async () => {
    const { receiver, producer } = await setup({});
    receiver.enqueue({ destroy: true });
    const job = await producer.add('hook');
    await waitFor(() => receiver.deliveredIds().includes(job.id), {
      what: 'delivery after a dropped socket',
    });
    expect(receiver.requestsFor(job.id)).toHaveLength(2);
  });
});
