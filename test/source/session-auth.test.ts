import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ImkitRest } from '../../src/source/imkit-rest.js';
import { FileTokenProvider, IssuedTokenProvider, StaticTokenProvider } from '../../src/source/tokens.js';
import { ImkitSimulator } from '../sim/imkit-simulator.js';
import { waitFor } from '../support/redis.js';
import { makeSession, type Harness } from './harness.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function sim(opts: Parameters<typeof ImkitSimulator.start>[0] = {}): Promise<ImkitSimulator> {
  const s = await ImkitSimulator.start(opts);
  cleanups.push(() => s.close());
  return s;
}

function track(h: Harness): Harness {
  cleanups.push(() => h.session.close());
  h.session.start();
  return h;
}

describe('AccountSession authentication', () => {
  it('backs off on a wrong token with growing spacing, stays up, and never logs the token', async () => {
    const s = await sim();
    s.addClient('bot');
    const badToken = 'tok_wrong-secret-value-1234567890';
    const h = track(
      makeSession(s, {
        account: { id: 'bot', encoding: 'none' },
        tokens: new StaticTokenProvider(badToken),
        timing: { backoffBaseMs: 100, backoffCapMs: 5_000 },
        random: () => 1,
      }),
    );
    await waitFor(() => s.auths.length >= 5, { timeoutMs: 8_000, what: '5 auth2 attempts' });
    const times = s.auths.map((a) => a.at);
    const gaps = times.slice(1).map((t, i) => t - times[i]!);
    // With the jitter pinned high, waits are the ceilings 100, 200, 400, 800 ms: each attempt waits
    // at least that long (plus connect time), so the spacing doubles instead of looping hot.
    gaps.slice(0, 4).forEach((gap, i) => expect(gap).toBeGreaterThanOrEqual(100 * 2 ** i - 5));
    for (let i = 1; i < 4; i++) expect(gaps[i]!).toBeGreaterThan(gaps[i - 1]!);
    expect(h.session.live).toBe(false);
    expect(s.auths.every((a) => a.ok === false && a.token === badToken)).toBe(true);
    expect(h.session.status()).toMatchObject({ id: 'bot', reconnects: expect.any(Number) });
    expect(h.session.status().lastError).toMatch(/^auth_failed: RC 401/);
    // The first failure is logged at once, at warn, with its reason; repeats of it are counted
    // into later lines (`repeated`), never logged one by one.
    const warnings = h.log.lines
      .filter((l) => l.includes('will reconnect'))
      .map((l) => JSON.parse(l) as { level: number; reason: string; repeated?: number });
    expect(warnings[0]).toMatchObject({ level: 40, reason: 'auth_failed' });
    expect(warnings[0]!.repeated).toBeUndefined();
    expect(warnings.every((w) => w.level === 40 && w.reason === 'auth_failed')).toBe(true);
    expect(warnings.length).toBeLessThan(h.session.status().reconnects);
    const text = h.log.text();
    expect(text).not.toContain(badToken);
    expect(JSON.stringify(h.session.status())).not.toContain(badToken);
    const metrics = await h.metrics.registry.getSingleMetricAsString('imkit_bridge_reconnects_total');
    expect(metrics).toMatch(/account="bot",reason="auth_failed"} [4-9]/);
  });

  it('without injected jitter still never hot-loops on a refused token', async () => {
    const s = await sim();
    const h = track(
      makeSession(s, {
        account: { id: 'bot', encoding: 'none' },
        tokens: new StaticTokenProvider('nope'),
        timing: { backoffBaseMs: 100, backoffCapMs: 400 },
      }),
    );
    await new Promise((r) => setTimeout(r, 1_500));
    // A hot loop would make hundreds of attempts; the backoff floor allows at most 1500/100.
    expect(s.auths.length).toBeGreaterThanOrEqual(3);
    expect(s.auths.length).toBeLessThanOrEqual(15);
    expect(h.session.status().state).not.toBe('closed');
  });

  it('sends deviceId and both header spellings in auth2 extra, then relays events', async () => {
    const s = await sim();
    const token = s.issueToken('bot');
    const h = track(
      makeSession(s, { account: { id: 'bot', encoding: 'none' }, tokens: new StaticTokenProvider(token) }),
    );
    await waitFor(() => h.session.live, { what: 'live' });
    expect(s.auths.at(-1)!.extra).toEqual({
      deviceId: 'imkit-bridge-bot',
      'IM-CLIENT-KEY': s.clientKey,
      CLIENT_KEY: s.clientKey,
      'IM-Authorization': token,
      Authorization: token,
    });
    expect(h.recorder.lives).toEqual([{ at: expect.any(Number) }]);
    s.emit('bot', 'lastRead', { roomID: 'r1', memberID: 'bot', messageID: 'm1' });
    await waitFor(() => h.recorder.events.length === 1, { what: 'event' });
    expect(h.recorder.events[0]).toMatchObject({ name: 'lastRead', payload: { roomID: 'r1' } });
    expect(h.session.status()).toMatchObject({
      state: 'live',
      reconnects: 0,
      lastEventAt: expect.any(String),
    });
    expect(await h.metrics.registry.getSingleMetricAsString('imkit_bridge_socket_connected')).toContain(
      'account="bot"} 1',
    );
  });

  it('sends conf first and accepts a base64-encoded ack; payloads stay raw base64 for the decoder', async () => {
    const s = await sim({ ackStyle: 'encoded' });
    const token = s.issueToken('bot');
    const h = track(
      makeSession(s, { account: { id: 'bot', encoding: 'base64' }, tokens: new StaticTokenProvider(token) }),
    );
    await waitFor(() => h.session.live, { what: 'live' });
    expect(s.stats.confs).toBe(1);
    s.emit('bot', 'myPrefDelete', 'pref-key');
    await waitFor(() => h.recorder.events.length === 1, { what: 'event' });
    expect(h.recorder.events[0]!.payload).toBe(Buffer.from('pref-key').toString('base64'));
  });

  it('with encoding custom, accepts an ack encrypted by the example AES-GCM codec', async () => {
    process.env.IMKIT_CODEC_KEY ??= randomBytes(32).toString('base64');
    const codec = await import('../../examples/codecs/aes-gcm.mjs');
    const s = await sim({ ackStyle: 'encoded', codec });
    const token = s.issueToken('bot');
    const h = track(
      makeSession(s, {
        account: { id: 'bot', encoding: 'custom', codec: './examples/codecs/aes-gcm.mjs' },
        tokens: new StaticTokenProvider(token),
        decodeAck: (raw) => codec.decode(raw),
      }),
    );
    await waitFor(() => h.session.live, { what: 'live' });
    expect(s.stats.confs).toBe(1);
    s.emit('bot', 'typing', { room: 'r1' });
    await waitFor(() => h.recorder.events.length === 1, { what: 'event' });
    const raw = h.recorder.events[0]!.payload;
    expect(typeof raw).toBe('string');
    expect(codec.decode(raw)).toEqual({ room: 'r1' });
  });

  for (const style of ['none', 'null', 'NO ACK'] as const) {
    it(`treats ack style "${style}" as a failure and retries`, async () => {
      const s = await sim({ ackStyle: style });
      const token = s.issueToken('bot');
      const h = track(
        makeSession(s, {
          account: { id: 'bot', encoding: 'none' },
          tokens: new StaticTokenProvider(token),
          timing: { ackTimeoutMs: 300 },
        }),
      );
      await waitFor(() => s.auths.length >= 2, { timeoutMs: 5_000, what: 'a retried auth2' });
      expect(h.session.live).toBe(false);
      expect(h.session.status().lastError).toMatch(style === 'none' ? /^auth_timeout/ : /^auth_failed/);
      s.ackStyle = 'plain';
      await waitFor(() => h.session.live, { timeoutMs: 5_000, what: 'live after acks return' });
    });
  }

  it('with issueToken, fetches a new token after the old one expires and is live again', async () => {
    const s = await sim();
    const rest = new ImkitRest({ url: s.url, apiKey: s.apiKey, clientKey: s.clientKey });
    cleanups.push(() => rest.close());
    const h = track(
      makeSession(s, {
        account: { id: 'bot', issueToken: true, encoding: 'none' },
        tokens: new IssuedTokenProvider(rest, 'bot'),
      }),
    );
    await waitFor(() => h.session.live, { what: 'live' });
    const first = s.auths.at(-1)!.token as string;
    s.expireToken(first);
    s.dropAll();
    await waitFor(() => h.recorder.lives.length === 2, { timeoutMs: 8_000, what: 'live again' });
    const tokens = s.auths.map((a) => a.token);
    // The cached token is tried once, refused, then a fresh one is issued.
    expect(s.auths.filter((a) => a.token === first && !a.ok).length).toBe(1);
    expect(s.auths.at(-1)).toMatchObject({ ok: true });
    expect(tokens.at(-1)).not.toBe(first);
    expect(h.recorder.lives[1]!.gap).toEqual({ from: expect.any(Number), to: h.recorder.lives[1]!.at });
    s.emit('bot', 'typing', { room: 'r2' });
    await waitFor(() => h.recorder.named('typing').length === 1, { what: 'event on new token' });
    expect(h.log.text()).not.toContain(first);
    expect(h.log.text()).not.toContain(tokens.at(-1) as string);
  });

  it('with tokenFile, picks up a rotated token on the next auth2', async () => {
    const s = await sim();
    const dir = mkdtempSync(join(tmpdir(), 'imkit-token-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'token');
    const first = s.issueToken('bot');
    writeFileSync(file, `${first}\n`);
    const h = track(
      makeSession(s, {
        account: { id: 'bot', tokenFile: file, encoding: 'none' },
        tokens: new FileTokenProvider(file),
      }),
    );
    await waitFor(() => h.session.live, { what: 'live' });
    const second = s.issueToken('bot');
    writeFileSync(file, second);
    s.expireToken(first);
    s.dropAll();
    await waitFor(() => h.recorder.lives.length === 2, { timeoutMs: 5_000, what: 'live on rotated token' });
    expect(s.auths.map((a) => [a.token, a.ok])).toEqual([
      [first, true],
      [second, true],
    ]);
  });

  it('reports an unreadable token file without crashing and recovers when it appears', async () => {
    const s = await sim();
    const dir = mkdtempSync(join(tmpdir(), 'imkit-token-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'token');
    const h = track(
      makeSession(s, {
        account: { id: 'bot', tokenFile: file, encoding: 'none' },
        tokens: new FileTokenProvider(file),
      }),
    );
    await waitFor(() => h.session.status().lastError?.startsWith('token_unavailable'), {
      what: 'token error',
    });
    writeFileSync(file, s.issueToken('bot'));
    await waitFor(() => h.session.live, { timeoutMs: 5_000, what: 'live' });
  });
});
