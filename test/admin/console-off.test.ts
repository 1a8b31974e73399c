import { afterAll, beforeAll, expect, test } from 'vitest';
import { BridgeMetrics } from '../../src/admin/metrics.js';
import { AdminServer } from '../../src/admin/server.js';
import { createLogger } from '../../src/lifecycle/logger.js';

let server: AdminServer;
let base: string;

beforeAll(async () => {
  const source = {
    readiness: () => Promise.resolve({ ready: true, reasons: [] }),
    status: () => Promise.resolve({ accounts: [] }),
    refreshMetrics: () => Promise.resolve(),
  };
  server = new AdminServer(source, new BridgeMetrics(), createLogger({ level: 'silent' }), {
    maxConnections: 8,
    requestTimeout: 2_000,
    adminToken: undefined,
  });
  base = `http://127.0.0.1:${await server.listen('127.0.0.1', 0)}`;
});

afterAll(() => server.close());

test('without server.adminToken, / says how to turn the console on, and no console page exists', async () => {
  const root = await fetch(`${base}/`);
  expect(root.status).toBe(200);
  expect(root.headers.get('content-type')).toBe('text/plain; charset=utf-8');
  const text = await root.text();
  expect(text).toContain('The operating console is off');
  expect(text).toContain('adminToken: ${env:ADMIN_TOKEN}');

  for (const path of ['/login', '/dead-letters', '/console.css']) {
    expect((await fetch(`${base}${path}`)).status, path).toBe(404);
  }
  const post = await fetch(`${base}/dead-letters/purge`, { method: 'POST', body: 'confirm=yes' });
  expect(post.status).toBe(405);
  expect((await fetch(`${base}/healthz`)).status).toBe(200);
  expect((await fetch(`${base}/status`)).status).toBe(200);
});
