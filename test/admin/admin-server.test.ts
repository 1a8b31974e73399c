import { readdirSync } from 'node:fs';
import { request } from 'node:http';
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { BridgeProcess } from '../support/bridge-process.js';
import { waitFor } from '../support/redis.js';
import { BOT, World } from '../e2e/world.js';

const MAX_CONNECTIONS = 16;
const REQUEST_TIMEOUT_MS = 3_000;
const ADMIN_TOKEN = 'admin-token-6f1d2c9e8b7a';
const FLOOD = 3_000;

/** A GET on a connection of its own, so no pooled socket (possibly evicted) is reused. */
function freshGet(port: number, path: string, headers: Record<string, string> = {}) {
  return new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, headers, agent: false, timeout: 5_000 }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${path} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

/** File handles the bridge process holds right now. */
function openFiles(bridge: BridgeProcess): number {
  return readdirSync(`/proc/${bridge.pid}/fd`).length;
}

/** Opens a socket that never sends a byte (or only `partial`) and records when it closes. */
function idleSocket(
  port: number,
  partial?: string,
): Promise<{ socket: Socket; closedAt: () => number | undefined }> {
  return new Promise((resolve) => {
    let closedAt: number | undefined;
    const socket = connect(port, '127.0.0.1');
    socket.on('error', () => undefined);
    socket.on('close', () => {
      closedAt = Date.now();
      resolve({ socket, closedAt: () => closedAt });
    });
    socket.on('connect', () => {
      if (partial) socket.write(partial);
      resolve({ socket, closedAt: () => closedAt });
    });
  });
}

describe('admin HTTP under an idle-connection flood', () => {
  let world: World;
  let bridge: BridgeProcess;
  const flood: { socket: Socket; closedAt: () => number | undefined }[] = [];

  beforeAll(async () => {
    world = await World.start();
    bridge = await world.bridge(
      world.config({
        top: {
          server: {
            host: '127.0.0.1',
            port: 0,
            maxConnections: MAX_CONNECTIONS,
            requestTimeout: `${REQUEST_TIMEOUT_MS}ms`,
            adminToken: ADMIN_TOKEN,
          },
        },
      }),
    );
    await bridge.waitReady();
    await world.connected();
  });

  afterAll(async () => {
    for (const { socket } of flood) socket.destroy();
    await world.close();
  });

  test('connections are capped, health answers on a fresh connection, and webhook delivery goes on', async () => {
    const before = openFiles(bridge);
    for (let i = 0; i < FLOOD; i += 250) {
      const batch = Array.from({ length: Math.min(250, FLOOD - i) }, () => idleSocket(bridge.adminPort));
      flood.push(...(await Promise.all(batch)));
    }
    expect(openFiles(bridge)).toBeLessThanOrEqual(before + MAX_CONNECTIONS + 8);
    await waitFor(() => flood.filter((f) => f.closedAt() === undefined).length <= MAX_CONNECTIONS, {
      timeoutMs: 5_000,
      what: `at most ${MAX_CONNECTIONS} flood connections open`,
    });

    expect(await freshGet(bridge.adminPort, '/healthz')).toMatchObject({ status: 200 });
    world.sim.emit(BOT, 'typing', { room: 'during-flood', message: 'typing' });
    const [typing] = await world.waitDelivered(1, 'typing');
    expect(typing!.data).toMatchObject({ room: 'during-flood' });
  });

  test('/status needs the admin token; /healthz, /readyz and /metrics stay open', async () => {
    const port = bridge.adminPort;
    expect((await freshGet(port, '/status')).status).toBe(401);
    expect(
      (await freshGet(port, '/status', { authorization: 'Bearer wrong-token-of-any-length' })).status,
    ).toBe(401);
    expect((await freshGet(port, '/status', { authorization: ADMIN_TOKEN })).status).toBe(401);
    const status = await freshGet(port, '/status', { authorization: `Bearer ${ADMIN_TOKEN}` });
    expect(status.status).toBe(200);
    expect(JSON.parse(status.body)).toMatchObject({ role: 'all', accounts: [expect.objectContaining({})] });
    for (const path of ['/healthz', '/readyz', '/metrics'])
      expect((await freshGet(port, path)).status, path).toBe(200);
  });

  test('a connection that sends no request, or only part of its headers, is closed after the request timeout', async () => {
    const opened = Date.now();
    const silent = await idleSocket(bridge.adminPort);
    const halfSent = await idleSocket(bridge.adminPort, 'GET /healthz HTTP/1.1\r\nHost: x\r\n');
    await waitFor(() => silent.closedAt() !== undefined && halfSent.closedAt() !== undefined, {
      timeoutMs: REQUEST_TIMEOUT_MS * 3,
      what: 'idle admin connections closed',
    });
    expect(silent.closedAt()! - opened).toBeGreaterThanOrEqual(REQUEST_TIMEOUT_MS - 100);
  });
});
