import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { LogThrottle } from '../../src/lifecycle/log-throttle.js';
import { StaticTokenProvider } from '../../src/source/tokens.js';
import { ImkitSimulator } from '../sim/imkit-simulator.js';
import { freePort, waitFor } from '../support/redis.js';
import { makeSession, type Harness } from './harness.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

/** The simulator only lends its keys; the session is pointed at `url`. */
async function sessionAt(url: string, failureLog?: LogThrottle): Promise<Harness> {
  const sim = await ImkitSimulator.start();
  cleanups.push(() => sim.close());
  const h = makeSession(sim, {
    account: { id: 'bot', encoding: 'none' },
    tokens: new StaticTokenProvider('t'),
    url,
    ...(failureLog ? { failureLog } : {}),
  });
  cleanups.push(() => h.session.close());
  h.session.start();
  return h;
}

function failureLines(h: Harness): { detail: string; repeated?: number }[] {
  return h.log.lines
    .map((l) => JSON.parse(l) as { msg: string; detail: string; repeated?: number })
    .filter((r) => r.msg === 'IMKIT session failed; will reconnect');
}

describe('an unreachable IMKIT', () => {
  it('is logged and shown in status with its cause: ECONNREFUSED and the address', async () => {
    const port = await freePort();
    const h = await sessionAt(`http://127.0.0.1:${port}`);
    await waitFor(() => failureLines(h).length > 0, { what: 'a failure line' });
    expect(failureLines(h)[0]!.detail).toMatch(new RegExp(`ECONNREFUSED 127\\.0\\.0\\.1:${port}`));
    expect(h.session.status().lastError).toMatch(/^connect_error: .*ECONNREFUSED/);
  });

  it('names the HTTP status when the handshake is refused', async () => {
    const server = createServer((_req, res) => res.writeHead(403).end('forbidden'));
    server.on('upgrade', (_req, socket) => socket.end('HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
    const h = await sessionAt(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    await waitFor(() => failureLines(h).length > 0, { what: 'a failure line' });
    expect(failureLines(h)[0]!.detail).toMatch(/403/);
  });

  it('names a DNS failure', async () => {
    const h = await sessionAt('http://imkit.invalid');
    await waitFor(() => failureLines(h).length > 0, { timeoutMs: 15_000, what: 'a failure line' });
    expect(failureLines(h)[0]!.detail).toMatch(/ENOTFOUND|EAI_AGAIN/);
  });

  it('fails again and again without a line per attempt: repeats are counted', async () => {
    const h = await sessionAt(`http://127.0.0.1:${await freePort()}`, new LogThrottle(1_000));
    await waitFor(() => h.session.status().reconnects >= 8, { what: '8 failed attempts' });
    await h.session.close();
    const reconnects = h.session.status().reconnects;
    // Once the last window closes, every attempt is accounted for: lines plus counted repeats.
    const total = () => failureLines(h).reduce((n, l) => n + (l.repeated ?? 1), 0);
    await waitFor(() => total() === reconnects, { what: 'every attempt counted' });
    const lines = failureLines(h);
    expect(lines.length).toBeLessThanOrEqual(3);
    expect(lines[0]!.repeated).toBeUndefined();
    expect(lines.some((l) => (l.repeated ?? 0) > 1)).toBe(true);
  });
});
