import { afterEach, describe, expect, it } from 'vitest';
import { StaticTokenProvider } from '../../src/source/tokens.js';
import { ImkitSimulator, type SimulatorOptions } from '../sim/imkit-simulator.js';
import { waitFor } from '../support/redis.js';
import { TcpProxy } from '../support/tcp-proxy.js';
import { makeSession, type Harness } from './harness.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function sim(opts: SimulatorOptions = {}): Promise<ImkitSimulator> {
  const s = await ImkitSimulator.start(opts);
  cleanups.push(() => s.close());
  return s;
}

function live(s: ImkitSimulator, account: Record<string, unknown>, url?: string): Harness {
  const h = makeSession(s, {
    account: { id: 'bot', ...account },
    tokens: new StaticTokenProvider(s.issueToken('bot')),
    ...(url ? { url } : {}),
  });
  cleanups.push(() => h.session.close());
  h.session.start();
  return h;
}

describe('AccountSession under faults', () => {
  for (const abrupt of [false, true]) {
    it(`re-confs, re-auths and relays again after a ${abrupt ? 'abrupt' : 'graceful'} server restart`, async () => {
      const s = await sim({ ackStyle: 'encoded' });
      const h = live(s, { encoding: 'base64' });
      await waitFor(() => h.session.live, { what: 'live' });
      s.emit('bot', 'typing', { n: 1 });
      await waitFor(() => h.recorder.events.length === 1, { what: 'first event' });

      await s.restart({ abrupt, downtimeMs: 200 });
      await waitFor(() => h.recorder.lives.length === 2, { timeoutMs: 8_000, what: 'live after restart' });
      expect(s.stats.confs).toBe(2);
      expect(s.stats.authOk).toBe(2);
      expect(h.recorder.downs).toEqual([
        { at: expect.any(Number), reason: abrupt ? 'disconnected' : 'server_disconnect' },
      ]);
      const gap = h.recorder.lives[1]!.gap!;
      expect(gap.from).toBe(h.recorder.downs[0]!.at);
      expect(gap.to - gap.from).toBeGreaterThanOrEqual(200);

      s.emit('bot', 'typing', { n: 2 });
      await waitFor(() => h.recorder.events.length === 2, { what: 'event after restart' });
      expect(h.recorder.events[1]!.payload).toBe(Buffer.from(JSON.stringify({ n: 2 })).toString('base64'));
      expect(h.session.status().reconnects).toBeGreaterThanOrEqual(1);
    });
  }

  it('answers app-level pings with pong', async () => {
    const s = await sim({ pingIntervalMs: 50 });
    const h = live(s, { encoding: 'none' });
    await waitFor(() => h.session.live, { what: 'live' });
    await waitFor(() => s.stats.pongs >= 3, { what: '3 pongs' });
    expect(h.recorder.events.filter((e) => e.name === 'ping')).toEqual([]);
  });

  it('replaces a half-open connection within a small multiple of heartbeatTimeout', async () => {
    const s = await sim({ pingIntervalMs: 100 });
    const proxy = await TcpProxy.start(s.port);
    cleanups.push(() => proxy.close());
    const heartbeatTimeout = 800;
    const h = live(s, { encoding: 'none', heartbeatTimeout }, proxy.url);
    await waitFor(() => h.session.live, { what: 'live' });
    // Healthy pings keep it up well past the timeout.
    await new Promise((r) => setTimeout(r, heartbeatTimeout * 1.5));
    expect(h.recorder.downs).toEqual([]);

    const frozenAt = Date.now();
    proxy.freeze();
    await waitFor(() => h.recorder.lives.length === 2, { timeoutMs: heartbeatTimeout * 4, what: 'replaced' });
    const replacedAfter = h.recorder.lives[1]!.at - frozenAt;
    expect(h.recorder.downs[0]!.reason).toBe('heartbeat_timeout');
    expect(replacedAfter).toBeGreaterThanOrEqual(heartbeatTimeout);
    expect(replacedAfter).toBeLessThan(heartbeatTimeout * 3);
    s.emit('bot', 'typing', { after: 'half-open' });
    await waitFor(() => h.recorder.named('typing').length >= 1, { what: 'event on new connection' });
  });

  it('reconnects when the server goes silent for the account', async () => {
    const s = await sim({ pingIntervalMs: 100 });
    const h = live(s, { encoding: 'none', heartbeatTimeout: 600 });
    await waitFor(() => h.session.live, { what: 'live' });
    s.silence('bot');
    await waitFor(() => h.recorder.downs.length === 1, { timeoutMs: 3_000, what: 'down' });
    expect(h.recorder.downs[0]!.reason).toBe('heartbeat_timeout');
    s.silence('bot', false);
    await waitFor(() => h.recorder.lives.length === 2, { timeoutMs: 3_000, what: 'live again' });
  });

  it('relays every event with ["*"] and only the listed ones otherwise', async () => {
    const s = await sim();
    const all = live(s, { encoding: 'none' });
    const some = makeSession(s, {
      account: { id: 'bot', encoding: 'none', events: ['chat message', 'myPrefDelete'] },
      tokens: new StaticTokenProvider(s.issueToken('bot')),
    });
    cleanups.push(() => some.session.close());
    some.session.start();
    await waitFor(() => all.session.live && some.session.live, { what: 'both live' });
    s.emit('bot', 'typing', { room: 'r' });
    s.emit('bot', 'lastRead', { roomID: 'r' });
    s.sendMessage('r', 'hello', { members: ['bot'] });
    s.emit('bot', 'myPrefDelete', 'k');
    s.emit('bot', 'ping', undefined);
    await waitFor(() => all.recorder.events.length === 4 && some.recorder.events.length === 2, {
      what: 'events relayed',
    });
    expect(all.recorder.events.map((e) => e.name)).toEqual([
      'typing',
      'lastRead',
      'chat message',
      'myPrefDelete',
    ]);
    expect(some.recorder.events.map((e) => e.name)).toEqual(['chat message', 'myPrefDelete']);
    expect(some.recorder.events[1]!.payload).toBe('k');
  });

  it('close() is idempotent, stops reconnecting and reports closed', async () => {
    const s = await sim();
    const h = live(s, { encoding: 'none' });
    await waitFor(() => h.session.live, { what: 'live' });
    await h.session.close();
    await h.session.close();
    expect(h.session.status().state).toBe('closed');
    expect(h.session.live).toBe(false);
    await waitFor(() => s.connectedCount('bot') === 0, { what: 'socket gone' });
    const connections = s.stats.connections;
    await new Promise((r) => setTimeout(r, 300));
    expect(s.stats.connections).toBe(connections);
    expect(await h.metrics.registry.getSingleMetricAsString('imkit_bridge_socket_connected')).toContain(
      'account="bot"} 0',
    );
  });

  it('resets the backoff after a healthy live period', async () => {
    const s = await sim();
    const h = makeSession(s, {
      account: { id: 'bot', encoding: 'none' },
      tokens: new StaticTokenProvider(s.issueToken('bot')),
      timing: { backoffBaseMs: 50, backoffCapMs: 5_000, healthyAfterMs: 500 },
      random: () => 1,
    });
    cleanups.push(() => h.session.close());
    s.rejectAllTokens = true;
    h.session.start();
    // Five refusals push the next ceiling to 1.6 s.
    await waitFor(() => s.stats.authFailed >= 5, { timeoutMs: 5_000, what: 'five refusals' });
    s.rejectAllTokens = false;
    await waitFor(() => h.session.live, { timeoutMs: 5_000, what: 'live' });
    await new Promise((r) => setTimeout(r, 600));
    const connections = s.stats.connections;
    const droppedAt = Date.now();
    s.dropAll();
    await waitFor(() => s.stats.connections > connections, { what: 'reconnect' });
    expect(Date.now() - droppedAt).toBeLessThan(500);
    await waitFor(() => h.recorder.lives.length === 2, { what: 'live again' });
  });
});
