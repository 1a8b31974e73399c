import { io, type Socket } from 'socket.io-client';
import { afterEach, describe, expect, it } from 'vitest';
import { ImkitSimulator } from './imkit-simulator.js';
import { waitFor } from '../support/redis.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function client(sim: ImkitSimulator, conf?: 'base64' | 'custom'): Promise<Socket> {
  const socket = io(sim.url, { forceNew: true, transports: ['websocket'], reconnection: false });
  cleanups.push(() => void socket.disconnect());
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  if (conf) await socket.emitWithAck('conf', { encoding: conf });
  return socket;
}

async function post(url: string, headers: Record<string, string>, body: unknown) {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  return {
    status: res.status,
    json: (await res.json()) as { RC: number; RM: string; result?: Record<string, unknown> },
  };
}

describe('ImkitSimulator', () => {
  it('issues tokens over POST /admin/clients and refuses a wrong API key with a 401 envelope', async () => {
    const sim = await ImkitSimulator.start({ apiKey: 'k1' });
    cleanups.push(() => sim.close());
    const bad = await post(
      `${sim.url}/admin/clients`,
      { 'IM-API-KEY': 'nope' },
      { _id: 'bot', issueAccessToken: true },
    );
    expect(bad.status).toBe(401);
    expect(bad.json.RC).toBe(401);
    const ok = await post(
      `${sim.url}/admin/clients`,
      { 'IM-API-KEY': 'k1' },
      { _id: 'bot', issueAccessToken: true },
    );
    expect(ok.json).toMatchObject({ RC: 0, RM: 'OK', result: { _id: 'bot', token: expect.any(String) } });
    expect(Date.parse(ok.json.result!.expirationDate as string)).toBeGreaterThan(Date.now());
  });

  it('acks auth2 with the envelope, disconnects on a bad token, and encodes per socket', async () => {
    const sim = await ImkitSimulator.start({ codec: { encode: (v) => `c:${JSON.stringify(v)}` } });
    cleanups.push(() => sim.close());
    const token = sim.issueToken('bot');
    const plain = await client(sim);
    const b64 = await client(sim, 'base64');
    const custom = await client(sim, 'custom');
    for (const s of [plain, b64, custom]) {
      expect(await s.emitWithAck('auth2', token, { deviceId: 'd' })).toMatchObject({
        RC: 0,
        result: { client: { _id: 'bot' } },
      });
    }
    const got: unknown[][] = [[], [], []];
    [plain, b64, custom].forEach((s, i) => s.on('myPrefDelete', (p: unknown) => got[i]!.push(p)));
    expect(sim.emit('bot', 'myPrefDelete', 'key-1')).toBe(3);
    await waitFor(() => got.every((g) => g.length === 1), { what: 'three deliveries' });
    expect(got).toEqual([['key-1'], [Buffer.from('key-1').toString('base64')], ['c:"key-1"']]);

    const intruder = await client(sim);
    const closed = new Promise<string>((resolve) => intruder.once('disconnect', (r) => resolve(r)));
    expect(await intruder.emitWithAck('auth2', 'forged', {})).toMatchObject({ RC: 401 });
    expect(await closed).toBe('io server disconnect');
    expect(sim.stats).toMatchObject({ authOk: 3, authFailed: 1 });
  });

  it('serves REST catch-up with client auth (both header spellings) and admin messages newest first', async () => {
    const sim = await ImkitSimulator.start({ messageOrder: 'desc' });
    cleanups.push(() => sim.close());
    const token = sim.issueToken('bot');
    for (let i = 0; i < 5; i++) sim.storeMessage('r1', `m${i}`, { members: ['bot'] });
    const modern = { 'IM-CLIENT-KEY': sim.clientKey, 'IM-Authorization': token };
    const legacy = { CLIENT_KEY: sim.clientKey, Authorization: token };
    for (const headers of [modern, legacy]) {
      const res = await fetch(`${sim.url}/rooms/r1/messages/v3?afterTime=0&limit=3`, { headers });
      const body = (await res.json()) as {
        RC: number;
        result: { totalCount: number; data: { message: string }[] };
      };
      expect(body.RC).toBe(0);
      expect(body.result.totalCount).toBe(5);
      expect(body.result.data.map((m) => m.message)).toEqual(['m2', 'm1', 'm0']);
    }
    const denied = await fetch(`${sim.url}/rooms?updatedAfter=0`, { headers: { 'IM-Authorization': token } });
    expect(denied.status).toBe(401);
    const admin = await fetch(`${sim.url}/admin/messages?limit=2`, { headers: { 'IM-API-KEY': sim.apiKey } });
    const adminBody = (await admin.json()) as { result: { data: { message: string }[] } };
    expect(adminBody.result.data.map((m) => m.message)).toEqual(['m4', 'm3']);
  });
});
