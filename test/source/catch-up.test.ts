import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { catchUp } from '../../src/source/catch-up.js';
import { ImkitAuthError, ImkitRestError, ImkitUnreachableError } from '../../src/errors.js';
import { ImkitRest } from '../../src/source/imkit-rest.js';
import { StaticTokenProvider } from '../../src/source/tokens.js';
import { ImkitSimulator, type SimulatorOptions } from '../sim/imkit-simulator.js';
import { freePort, waitFor } from '../support/redis.js';
import { captureLogger, makeSession } from './harness.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function setup(opts: SimulatorOptions = {}) {
  const sim = await ImkitSimulator.start(opts);
  cleanups.push(() => sim.close());
  const rest = new ImkitRest({
    url: sim.url,
    clientKey: sim.clientKey,
    apiKey: sim.apiKey,
    timeoutMs: 2_000,
  });
  cleanups.push(() => rest.close());
  return { sim, rest };
}

describe('REST catch-up', () => {
  it('recovers messages stored during a disconnect: several pages, reverse order, complete, once, sorted', async () => {
    const { sim, rest } = await setup({ messageOrder: 'desc' });
    const token = sim.issueToken('bot');
    const h = makeSession(sim, {
      account: { id: 'bot', encoding: 'none' },
      tokens: new StaticTokenProvider(token),
    });
    cleanups.push(() => h.session.close());
    h.session.start();
    await waitFor(() => h.session.live, { what: 'live' });
    const before = sim.sendMessage('room-a', 'before the gap', {
      members: ['bot', 'alice'],
      sender: 'alice',
    });
    sim.sendMessage('room-x', 'not my room', { members: ['carol'] });
    await waitFor(() => h.recorder.events.length === 1, { what: 'live message' });

    await sim.down({ abrupt: true });
    await waitFor(() => h.recorder.downs.length === 1, { what: 'down' });
    const missed = [];
    for (let i = 0; i < 23; i++)
      missed.push(sim.storeMessage('room-a', `a${i}`, { members: ['bot', 'alice'] }));
    for (let i = 0; i < 7; i++) missed.push(sim.storeMessage('room-b', `b${i}`, { members: ['bot'] }));
    await sim.up();
    await waitFor(() => h.recorder.lives.length === 2, { timeoutMs: 8_000, what: 'live again' });
    const gap = h.recorder.lives[1]!.gap!;

    const log = captureLogger();
    const result = await catchUp({
      rest,
      token,
      gap,
      logger: log.logger,
      messagePageSize: 10,
      roomPageSize: 1,
    });

    expect(result.truncated).toBe(false);
    // Rooms one per page (3 pages: a, b, short), room-a 23 messages in 3 pages, room-b 1 page.
    expect(result.pages).toBe(7);
    expect(result.messages.map((m) => m.message)).toEqual(
      [...missed].sort((a, b) => a.messageTimeMS - b.messageTimeMS).map((m) => m.message),
    );
    expect(new Set(result.messages.map((m) => m._id)).size).toBe(result.messages.length);
    const times = result.messages.map((m) => m.messageTimeMS!);
    expect(times).toEqual([...times].sort((a, b) => a - b));
    expect(result.messages.some((m) => m._id === before._id || m.room === 'room-x')).toBe(false);
  });

  it('stops at its page cap and says so', async () => {
    const { sim, rest } = await setup({ messageOrder: 'asc' });
    const token = sim.issueToken('bot');
    const from = Date.now() - 1;
    for (let i = 0; i < 30; i++) sim.storeMessage('r', `m${i}`, { members: ['bot'] });
    const log = captureLogger();
    const result = await catchUp({
      rest,
      token,
      gap: { from, to: Date.now() + 1000 },
      logger: log.logger,
      messagePageSize: 5,
      maxPages: 3,
    });
    expect(result.truncated).toBe(true);
    // Page 1 lists rooms; then 5 messages, then 4 new ones (a later page overlaps the previous
    // one by its boundary millisecond).
    expect(result.pages).toBe(3);
    expect(result.messages).toHaveLength(9);
    expect(log.text()).toContain('page cap');
  });

  /** `count` messages of room r stamped with one millisecond; `run` catches up over them in pages of 10. */
  async function oneMillisecond(count: number, opts: SimulatorOptions = {}) {
    const { sim, rest } = await setup(opts);
    const token = sim.issueToken('bot');
    const from = Date.now();
    const at = from + 10;
    const stored = Array.from({ length: count }, (_, i) =>
      sim.storeMessage('r', `same ms ${i}`, { members: ['bot'], atMs: at }),
    );
    const log = captureLogger();
    const run = () =>
      catchUp({ rest, token, gap: { from, to: from + 1000 }, logger: log.logger, messagePageSize: 10 });
    return { sim, at, stored, log, run };
  }

  it('pages past more messages in one millisecond than a page holds', async () => {
    const { sim, at, stored, run } = await oneMillisecond(25, { messageOrder: 'desc' });
    const later = [1, 2, 3].map((d) =>
      sim.storeMessage('r', `later ${d}`, { members: ['bot'], atMs: at + d }),
    );
    const result = await run();
    expect(result.truncated).toBe(false);
    expect(new Set(result.messages.map((m) => m._id))).toEqual(
      new Set([...stored, ...later].map((m) => m._id)),
    );
    expect(result.messages).toHaveLength(28);
  });

  it('says so when one millisecond holds more messages than its largest page', async () => {
    const { log, run } = await oneMillisecond(120);
    const result = await run();
    expect(result.truncated).toBe(true);
    expect(result.messages).toHaveLength(100);
    expect(log.text()).toContain('sharing one millisecond');
  });

  it('keeps only messages inside the gap', async () => {
    const { sim, rest } = await setup();
    const token = sim.issueToken('bot');
    sim.storeMessage('r', 'old', { members: ['bot'] });
    const from = Date.now() + 5;
    await new Promise((r) => setTimeout(r, 10));
    const inside = sim.storeMessage('r', 'inside', { members: ['bot'] });
    const to = inside.messageTimeMS;
    await new Promise((r) => setTimeout(r, 5));
    sim.storeMessage('r', 'after', { members: ['bot'] });
    const result = await catchUp({
      rest,
      token,
      gap: { from, to },
      logger: captureLogger().logger,
      clockSkewMs: 0,
    });
    expect(result.messages.map((m) => m.message)).toEqual(['inside']);
  });
});

describe('ImkitRest', () => {
  it('maps refusals, bad keys and unreachable servers to typed errors without secrets', async () => {
    const { sim, rest } = await setup();
    await expect(rest.rooms('tok_not-valid', { updatedAfter: 0, skip: 0, limit: 5 })).rejects.toBeInstanceOf(
      ImkitAuthError,
    );
    const wrongKey = new ImkitRest({ url: sim.url, apiKey: 'wrong-api-key' });
    cleanups.push(() => wrongKey.close());
    const err = await wrongKey.issueToken('bot').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ImkitAuthError);
    expect((err as ImkitAuthError).code).toBe('BRIDGE_ERR_IMKIT_AUTH');
    expect(String((err as Error).message)).not.toContain('wrong-api-key');

    const issued = await rest.issueToken('bot');
    expect(issued.token).toMatch(/^tok_/);
    expect(issued.expiresAt).toBe(sim.tokenExpiry(issued.token));
    await expect(rest.roomMessages(issued.token, 'nope', { afterTime: 0, limit: 5 })).rejects.toBeInstanceOf(
      ImkitRestError,
    );

    const dead = new ImkitRest({ url: `http://127.0.0.1:${await freePort()}`, timeoutMs: 500 });
    cleanups.push(() => dead.close());
    const down = await dead.rooms('t', { updatedAfter: 0, skip: 0, limit: 1 }).catch((e: unknown) => e);
    expect(down).toBeInstanceOf(ImkitUnreachableError);
    expect((down as ImkitUnreachableError).code).toBe('BRIDGE_ERR_IMKIT_UNREACHABLE');
  });

  it('gives up on a server that never answers after its timeout', async () => {
    const silent = createServer(() => {});
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise<void>((resolve) => silent.close(() => resolve())));
    cleanups.push(() => silent.closeAllConnections());
    const rest = new ImkitRest({
      url: `http://127.0.0.1:${(silent.address() as AddressInfo).port}`,
      timeoutMs: 300,
    });
    cleanups.push(() => rest.close());
    const started = Date.now();
    const err = await rest.rooms('t', { updatedAfter: 0, skip: 0, limit: 1 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ImkitUnreachableError);
    expect((err as Error).message).toBe('GET /rooms no answer in 300 ms');
    expect(Date.now() - started).toBeLessThan(2_000);
  });
});
