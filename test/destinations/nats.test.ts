import { Writable } from 'node:stream';
import { jetstreamManager, type JetStreamManager, type StoredMsg } from '@nats-io/jetstream';
import { connect, type ConnectionOptions, type NatsConnection } from '@nats-io/transport-node';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Destination, SendOutcome } from '../../src/deliver/destination.js';
import { nats, parseNatsUrl } from '../../src/deliver/destinations/nats.js';
import type { DeliveryEvent } from '../../src/queue/job.js';
import { waitFor } from '../support/redis.js';
import { NatsServer, sharedNatsUrl, uniqueName, type NatsServerOptions } from '../support/nats-server.js';
import { redisSettingsFromUrl } from '../../src/queue/redis.js';

const DEDUP_WINDOW_MS = 10 * 60_000;
const NANOS_PER_MS = 1_000_000;

/** Log lines the destination wrote, for the credential checks. */
class LogCapture extends Writable {
  readonly lines: string[] = [];
  override _write(chunk: Buffer, _encoding: string, done: () => void): void {
    this.lines.push(chunk.toString());
    done();
  }
  get text(): string {
    return this.lines.join('');
  }
}

const opened: Destination[] = [];

function destination(
  options: { url: string; subject?: string },
  extra: { timeout?: number; logs?: LogCapture } = {},
): Destination {
  const config = nats.options.parse(options);
  const logger = pino({ level: 'debug' }, extra.logs ?? new LogCapture());
  const dest = nats.create(
    { ...config, id: 'audit', timeout: extra.timeout ?? 2_000, concurrency: 4 },
    { logger, bridgeRedis: redisSettingsFromUrl('redis://127.0.0.1:6379'), dedupWindowMs: DEDUP_WINDOW_MS },
  );
  opened.push(dest);
  return dest;
}

afterEach(async () => {
  await Promise.all(opened.splice(0).map((d) => d.close()));
});

let seq = 0;
function event(overrides: Partial<DeliveryEvent> = {}): DeliveryEvent {
  seq += 1;
  const base = {
    id: `evt_${process.pid}_${seq}`,
    type: 'chat message',
    account: 'audit-bot',
    receivedAt: Date.UTC(2026, 0, 2, 3, 4, 5, seq % 1000),
    ...overrides,
  };
  const body =
    overrides.body ??
    JSON.stringify({
      id: base.id,
      type: base.type,
      timestamp: new Date(base.receivedAt).toISOString(),
      account: base.account,
      data: { text: `héllo ${seq} 😀`, room: base.room },
    });
  return { ...base, body };
}

function connectionOptions(url: string): ConnectionOptions {
  const { server, user, pass, token } = parseNatsUrl(url);
  return { servers: server, user, pass, token };
}

/** The test's own client and stream manager, on the broker the destination uses. */
async function admin(options: ConnectionOptions): Promise<{ nc: NatsConnection; jsm: JetStreamManager }> {
  const nc = await connect(options);
  return { nc, jsm: await jetstreamManager(nc) };
}

async function addStream(jsm: JetStreamManager, name: string, subjects: string[]): Promise<void> {
  await jsm.streams.add({ name, subjects, duplicate_window: DEDUP_WINDOW_MS * NANOS_PER_MS });
}

async function storedMessages(jsm: JetStreamManager, stream: string): Promise<StoredMsg[]> {
  const info = await jsm.streams.info(stream);
  const messages: StoredMsg[] = [];
  for (let s = info.state.first_seq; s <= info.state.last_seq && info.state.messages > 0; s++) {
    const message = await jsm.streams.getMessage(stream, { seq: s });
    if (message) messages.push(message);
  }
  return messages;
}

function expectKind(outcome: SendOutcome, kind: SendOutcome['kind']): void {
  expect(outcome, JSON.stringify(outcome)).toMatchObject({ kind });
}

describe('nats destination: config', () => {
  it('accepts nats:// and tls:// URLs with the default subject, and refuses other schemes and bad subjects', () => {
    expect(nats.options.parse({ url: 'nats://127.0.0.1:4222' }).subject).toBe('imkit.{account}.{type}');
    expect(nats.options.safeParse({ url: 'tls://user:pw@nats.example:4443' }).success).toBe(true);
    const problems = (input: object) =>
      (nats.options.safeParse(input).error?.issues ?? []).map((i) => `${i.path.join('.')}: ${i.message}`);
    expect(problems({ url: 'http://127.0.0.1:4222' })).toEqual(['url: must be a nats:// or tls:// URL']);
    expect(problems({ url: 'nats://127.0.0.1:4222/path' })[0]).toMatch(/^url: .*no path/);
    expect(problems({ url: 'nats://h', subject: 'imkit.{acount}' })[0]).toMatch(
      /^subject: unknown placeholder \{acount\}/,
    );
    expect(problems({ url: 'nats://h', subject: 'imkit.*.{type}' })[0]).toMatch(/^subject: .*wildcard/);
    expect(problems({ url: 'nats://h', subject: 'imkit.>' })[0]).toMatch(/^subject: .*wildcard/);
    expect(problems({ url: 'nats://h', subject: 'imkit..{type}' })[0]).toMatch(/^subject: .*dot/);
    expect(problems({ url: 'nats://h', subject: '{account}.' })[0]).toMatch(/^subject: .*dot/);
    expect(problems({ url: 'nats://h', subject: 'imkit {type}' })[0]).toMatch(/^subject: .*whitespace/);
    expect(problems({ url: 'nats://h', subject: '' })[0]).toMatch(/^subject: /);
    expect(problems({ url: 'nats://h', stream: 'x' })[0]).toMatch(/stream/);
  });

  it('describes the target without credentials', () => {
    const described = nats.describe(
      nats.options.parse({ url: 'nats://bridge:hunter2-pw@nats.example:4222', subject: 'a.{type}' }),
    );
    expect(described).toBe('nats://nats.example:4222 a.{type}');
    expect(nats.describe(nats.options.parse({ url: 'tls://tok-s3cret@nats.example' }))).toBe(
      'tls://nats.example imkit.{account}.{type}',
    );
  });
});

describe('nats destination: JetStream contract (shared server)', () => {
  const url = sharedNatsUrl();
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  const streams: string[] = [];

  beforeAll(async () => {
    ({ nc, jsm } = await admin(connectionOptions(url)));
  });
  afterAll(async () => {
    for (const stream of streams) await jsm.streams.delete(stream).catch(() => undefined);
    await nc?.close();
  });

  async function stream(): Promise<{ name: string; prefix: string }> {
    const name = uniqueName();
    const prefix = name.replace(/-/g, '_');
    await addStream(jsm, name, [`${prefix}.>`]);
    streams.push(name);
    return { name, prefix };
  }

  it('puts every event in the stream once, with the SPEC headers and the body byte for byte', async () => {
    const { name, prefix } = await stream();
    const dest = destination({ url, subject: `${prefix}.{account}.{type}.{room}` });
    void dest.connect();
    const events = [
      event({ room: 'r-1' }),
      event({ type: 'message edited', room: 'room:{x}' }),
      event({ type: 'bridge.gap', account: 'a.b*c>d e' }),
      event({ account: 'é😀', room: 'général' }),
      event({ type: 'typing' }),
      ...Array.from({ length: 40 }, (_, i) => event({ room: `room-${i % 3}` })),
    ];
    const outcomes = await Promise.all(events.map((e) => dest.send(e, [])));
    for (const outcome of outcomes) expect(outcome).toEqual({ kind: 'delivered' });

    const stored = await storedMessages(jsm, name);
    expect(stored).toHaveLength(events.length);
    const byId = new Map(stored.map((m) => [m.header?.get('Nats-Msg-Id'), m]));
    expect(byId.size).toBe(events.length);
    const expectedSubjects = [
      `${prefix}.audit-bot.chat_message.r-1`,
      `${prefix}.audit-bot.message_edited.room__x_`,
      `${prefix}.a_b_c_d_e.bridge_gap.none`,
      `${prefix}.__.chat_message.g_n_ral`,
      `${prefix}.audit-bot.typing.none`,
    ];
    events.forEach((e, i) => {
      const m = byId.get(e.id)!;
      expect(m, e.id).toBeDefined();
      expect(Buffer.from(m.data).equals(Buffer.from(e.body, 'utf8'))).toBe(true);
      expect(m.header?.get('Imkit-Event-Type')).toBe(e.type);
      expect(m.header?.get('Imkit-Account')).toBe(e.account);
      expect(m.header?.get('Imkit-Timestamp')).toBe(new Date(e.receivedAt).toISOString());
      expect(m.header?.get('Imkit-Timestamp')).toBe(JSON.parse(e.body).timestamp);
      if (i < expectedSubjects.length) expect(m.subject).toBe(expectedSubjects[i]);
    });
  });

  it('adds traceparent and tracestate headers to a traced event only', async () => {
    const { name, prefix } = await stream();
    const dest = destination({ url, subject: `${prefix}.{type}` });
    const traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    const plain = event();
    const traced = { ...event(), traceparent, tracestate: 'vendor=opaque' };
    for (const e of [plain, traced]) expect(await dest.send(e, [])).toEqual({ kind: 'delivered' });

    const byId = new Map((await storedMessages(jsm, name)).map((m) => [m.header?.get('Nats-Msg-Id'), m]));
    expect(byId.get(traced.id)?.header?.get('traceparent')).toBe(traceparent);
    expect(byId.get(traced.id)?.header?.get('tracestate')).toBe('vendor=opaque');
    expect(byId.get(plain.id)?.header?.has('traceparent')).toBe(false);
  });

  it('stores an event sent twice once, and reports the repeat delivered as a duplicate', async () => {
    const { name, prefix } = await stream();
    const dest = destination({ url, subject: `${prefix}.{type}` });
    const e = event();
    expect(await dest.send(e, [])).toEqual({ kind: 'delivered' });
    const again = await dest.send(e, []);
    expect(again.kind).toBe('delivered');
    expect(again.kind === 'delivered' && again.note).toMatch(/duplicate/);
    // A second bridge process (its own connection) repeating it is dropped by the stream too.
    expect((await destination({ url, subject: `${prefix}.{type}` }).send(e, [])).kind).toBe('delivered');
    expect((await jsm.streams.info(name)).state.messages).toBe(1);
  });

  it('retries while no stream captures the subject, and delivers once one does', async () => {
    const name = uniqueName();
    const prefix = name.replace(/-/g, '_');
    const dest = destination({ url, subject: `${prefix}.{account}` });
    const e = event();
    const outcome = await dest.send(e, []);
    expect(outcome).toEqual({
      kind: 'retry',
      reason: `no stream captures ${prefix}.audit-bot (503 no responders)`,
    });

    await addStream(jsm, name, [`${prefix}.>`]);
    streams.push(name);
    expect(await dest.send(e, [])).toEqual({ kind: 'delivered' });
    expect((await jsm.streams.info(name)).state.messages).toBe(1);
  });

  it('dead-letters a message over the stream max_msg_size, and retries while the stream is full', async () => {
    const name = uniqueName();
    const prefix = name.replace(/-/g, '_');
    await jsm.streams.add({
      name,
      subjects: [`${prefix}.>`],
      max_msg_size: 512,
      max_msgs: 1,
      discard: 'new',
    });
    streams.push(name);
    const dest = destination({ url, subject: `${prefix}.x` });
    const big = await dest.send(event({ body: 'x'.repeat(1000) }), []);
    expect(big).toEqual({
      kind: 'permanent',
      reason: 'stream refused the message: message size exceeds maximum allowed',
    });
    expect(await dest.send(event(), [])).toEqual({ kind: 'delivered' });
    const full = await dest.send(event(), []);
    expect(full).toEqual({ kind: 'retry', reason: 'stream refused the message: maximum messages exceeded' });
  });

  it('warns once when the stream forgets message ids sooner than dedupWindow', async () => {
    const name = uniqueName();
    const prefix = name.replace(/-/g, '_');
    await jsm.streams.add({ name, subjects: [`${prefix}.>`], duplicate_window: 120_000 * NANOS_PER_MS });
    streams.push(name);
    const logs = new LogCapture();
    const dest = destination({ url, subject: `${prefix}.x` }, { logs });
    expect(await dest.send(event(), [])).toEqual({ kind: 'delivered' });
    expect(await dest.send(event(), [])).toEqual({ kind: 'delivered' });
    const warning = /less than dedupWindow/;
    await waitFor(() => warning.test(logs.text), { what: 'the duplicate window warning' });
    expect(logs.lines.filter((line) => warning.test(line))).toHaveLength(1);
    expect(logs.text).toMatch(/"duplicateWindowMs":120000/);
  });

  it('dead-letters an event whose type no NATS header can carry', async () => {
    const { name, prefix } = await stream();
    const dest = destination({ url, subject: `${prefix}.{type}` });
    const outcome = await dest.send(event({ type: 'evil\r\nNats-Msg-Id: x' }), []);
    expect(outcome).toMatchObject({ kind: 'permanent', reason: expect.stringMatching(/line break/) });
    expect(await dest.send(event(), [])).toEqual({ kind: 'delivered' });
    expect((await jsm.streams.info(name)).state.messages).toBe(1);
  });

  it('returns aborted at once for a signal that has fired, and nothing is published', async () => {
    const { name, prefix } = await stream();
    const dest = destination({ url, subject: `${prefix}.x` });
    expect(await dest.send(event(), [AbortSignal.abort()])).toEqual({ kind: 'aborted' });
    expect((await jsm.streams.info(name)).state.messages).toBe(0);
  });
});

describe('nats destination: broker faults (private server)', () => {
  const servers: NatsServer[] = [];
  afterAll(async () => {
    await Promise.all(servers.map((s) => s.close()));
  });

  async function privateServer(options: NatsServerOptions = {}): Promise<NatsServer> {
    const server = await NatsServer.start(options);
    servers.push(server);
    return server;
  }

  it('reports retry within the timeout while the server is down, and loses nothing it acknowledged', async () => {
    const server = await privateServer();
    const { nc, jsm } = await admin(server.clientOptions);
    await addStream(jsm, 'FAULT', ['fault.>']);
    await nc.close();

    const timeout = 1_000;
    const dest = destination({ url: server.url, subject: 'fault.{account}' }, { timeout });
    const delivered = new Set<string>();
    const pending = Array.from({ length: 300 }, () => event());
    let retries = 0;
    let killed = false;
    let longest = 0;

    // Four senders drain the list, as a lane with concurrency 4 would; a retried event goes to the back.
    const deadline = Date.now() + 60_000;
    const sender = async () => {
      for (let next = pending.shift(); next && Date.now() < deadline; next = pending.shift()) {
        const started = Date.now();
        const outcome = await dest.send(next, []);
        longest = Math.max(longest, Date.now() - started);
        if (outcome.kind === 'delivered') delivered.add(next.id);
        else {
          expectKind(outcome, 'retry');
          retries += 1;
          pending.push(next);
        }
        if (!killed && delivered.size >= 100) {
          killed = true;
          await server.kill();
          // Down long enough for sends to fail, then back on the same port and store.
          setTimeout(() => void server.startProcess(), 2 * timeout);
        }
      }
    };
    await Promise.all([sender(), sender(), sender(), sender()]);

    expect(killed).toBe(true);
    expect(retries).toBeGreaterThan(0);
    expect(longest).toBeLessThan(timeout + 1_000);
    expect(delivered.size).toBe(300);
    const check = await admin(server.clientOptions);
    const ids = (await storedMessages(check.jsm, 'FAULT')).map((m) => m.header?.get('Nats-Msg-Id'));
    await check.nc.close();
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids.sort()).toEqual([...delivered].sort());
  }, 90_000);

  it('retries while the server is not there to connect to, and connects once it is', async () => {
    const server = await privateServer();
    const { nc, jsm } = await admin(server.clientOptions);
    await addStream(jsm, 'LATE', ['late.>']);
    await nc.close();
    await server.kill();

    const dest = destination({ url: server.url, subject: 'late.x' }, { timeout: 1_000 });
    void dest.connect();
    const e = event();
    const outcome = await dest.send(e, []);
    expectKind(outcome, 'retry');
    expect(outcome.kind === 'retry' && outcome.reason).toMatch(/^not connected/);

    await server.startProcess();
    expect(await dest.send(e, [])).toEqual({ kind: 'delivered' });
  }, 20_000);

  it('returns aborted promptly when a signal fires while the publish waits on a dead server', async () => {
    const server = await privateServer();
    const { nc, jsm } = await admin(server.clientOptions);
    await addStream(jsm, 'ABORT', ['abort.>']);
    await nc.close();
    const timeout = 30_000;
    const dest = destination({ url: server.url, subject: 'abort.x' }, { timeout });
    expect(await dest.send(event(), [])).toEqual({ kind: 'delivered' });
    await server.kill();

    const controller = new AbortController();
    const sending = dest.send(event(), [controller.signal]);
    setTimeout(() => controller.abort(), 100);
    const started = Date.now();
    expect(await sending).toEqual({ kind: 'aborted' });
    expect(Date.now() - started).toBeLessThan(timeout / 2);
    // Closing with the server still down does not wait for it either.
    await dest.close();
    expect(Date.now() - started).toBeLessThan(timeout / 2);
  }, 20_000);

  it('dead-letters a message over the server max_payload at once, and keeps delivering others', async () => {
    const server = await privateServer({ maxPayload: 4096 });
    const { nc, jsm } = await admin(server.clientOptions);
    await addStream(jsm, 'BIG', ['big.>']);
    const dest = destination({ url: server.url, subject: 'big.x' });
    const big = event({ body: JSON.stringify({ text: 'x'.repeat(5000) }) });
    const outcome = await dest.send(big, []);
    expectKind(outcome, 'permanent');
    expect(outcome.kind === 'permanent' && outcome.reason).toMatch(/max_payload \(4096 bytes\)/);
    expect(await dest.send(event(), [])).toEqual({ kind: 'delivered' });
    expect((await jsm.streams.info('BIG')).state.messages).toBe(1);
    await nc.close();
  }, 20_000);

  it('logs in with user:pass or a token from the URL and never shows them', async () => {
    const password = 'pw-S3cret-not-for-logs';
    const token = 'tok-S3cret-not-for-logs';
    const withUser = await privateServer({ user: { name: 'bridge', password } });
    const withToken = await privateServer({ token });
    for (const server of [withUser, withToken]) {
      const { nc, jsm } = await admin(server.clientOptions);
      await addStream(jsm, 'AUTH', ['auth.>']);
      await nc.close();
    }
    const logs = new LogCapture();
    const userUrl = `nats://bridge:${encodeURIComponent(password)}@127.0.0.1:${withUser.port}`;
    const tokenUrl = `nats://${token}@127.0.0.1:${withToken.port}`;
    const outcomes: SendOutcome[] = [
      await destination({ url: userUrl, subject: 'auth.x' }, { logs }).send(event(), []),
      await destination({ url: tokenUrl, subject: 'auth.x' }, { logs }).send(event(), []),
    ];
    expect(outcomes).toEqual([{ kind: 'delivered' }, { kind: 'delivered' }]);

    // Wrong credentials, and a server gone: both retried, with reasons and logs free of secrets.
    const wrongUrl = `nats://bridge:${encodeURIComponent(`${password}-wrong`)}@127.0.0.1:${withUser.port}`;
    const wrong = await destination({ url: wrongUrl, subject: 'auth.x' }, { logs }).send(event(), []);
    expectKind(wrong, 'retry');
    const tokenDest = destination({ url: tokenUrl, subject: 'auth.x' }, { logs, timeout: 500 });
    expect(await tokenDest.send(event(), [])).toEqual({ kind: 'delivered' });
    await withToken.kill();
    const down = await tokenDest.send(event(), []);
    expectKind(down, 'retry');
    outcomes.push(wrong, down);

    for (const url of [userUrl, tokenUrl, wrongUrl]) {
      expect(nats.describe(nats.options.parse({ url }))).not.toMatch(/S3cret/);
    }
    expect(JSON.stringify(outcomes)).not.toMatch(/S3cret/);
    expect(logs.text).toMatch(/nats: connected/);
    expect(logs.text).not.toMatch(/S3cret/);
  }, 30_000);
});
