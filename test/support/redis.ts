import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port')),
      );
    });
  });
}

export function hasRedisServer(): boolean {
  return spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status === 0;
}

/**
 * A private redis-server on a free loopback port, so fault tests can stop and restart it without
 * touching anyone else's data. AOF is on (fsync always) because the durability tests restart it.
 */
export class RedisServer {
  readonly dir = mkdtempSync(join(tmpdir(), 'imkit-bridge-redis-'));
  private child: ChildProcess | undefined;

  private constructor(
    readonly port: number,
    private readonly detached: boolean,
  ) {}

  /**
   * `detached`: in a process group of its own, so a terminal's Ctrl-C reaches only its parent,
   * which can then stop what uses Redis before Redis (the demo does).
   */
  static async start(options: { port?: number; detached?: boolean } = {}): Promise<RedisServer> {
    const server = new RedisServer(options.port ?? (await freePort()), options.detached ?? false);
    await server.startProcess();
    return server;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    return this.child !== undefined;
  }

  /** Starts (again) on the same port and directory, so the AOF is replayed. */
  async startProcess(): Promise<void> {
    if (this.child) return;
    const child = spawn(
      'redis-server',
      [
        '--port',
        String(this.port),
        '--bind',
        '127.0.0.1',
        '--dir',
        this.dir,
        '--appendonly',
        'yes',
        '--appendfsync',
        'always',
        '--save',
        '',
        '--maxmemory-policy',
        'noeviction',
      ],
      { stdio: 'ignore', detached: this.detached },
    );
    this.child = child;
    child.once('exit', () => {
      if (this.child === child) this.child = undefined;
    });
    await this.waitUntil(true, 10_000);
  }

  /** SIGTERM by default (Redis flushes the AOF); `kill9` for an abrupt crash. */
  async stop(options: { kill9?: boolean } = {}): Promise<void> {
    const child = this.child;
    if (!child) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill(options.kill9 ? 'SIGKILL' : 'SIGTERM');
    await exited;
    this.child = undefined;
  }

  async restart(options: { downMs?: number; kill9?: boolean } = {}): Promise<void> {
    await this.stop(options);
    if (options.downMs) await new Promise((r) => setTimeout(r, options.downMs));
    await this.startProcess();
  }

  async close(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }

  private async waitUntil(up: boolean, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const client = new Redis(this.url, {
        lazyConnect: true,
        maxRetriesPerRequest: 0,
        enableOfflineQueue: false,
        retryStrategy: () => null,
      });
      // Refused connections are expected while polling; connect() reports them, so silence the event.
      client.on('error', () => {});
      try {
        await client.connect();
        const pong = await client.ping();
        client.disconnect();
        if (pong === 'PONG' && up) return;
      } catch {
        client.disconnect();
        if (!up) return;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(
      `redis-server on port ${this.port} did not ${up ? 'start' : 'stop'} within ${timeoutMs} ms`,
    );
  }
}

/**
 * The Redis a suite should use: `REDIS_URL` when set (with a key prefix of its own), else a private
 * redis-server. Suites that stop or restart Redis call `RedisServer.start()` directly.
 */
export async function testRedis(): Promise<{ url: string; prefix: string; close(): Promise<void> }> {
  const prefix = `t${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  const external = process.env.REDIS_URL;
  if (external) return { url: external, prefix, close: async () => {} };
  const server = await RedisServer.start();
  return { url: server.url, prefix, close: () => server.close() };
}

/** One `field:value` line of an `INFO` (or `CLUSTER INFO`) reply, trimmed. */
export function infoField(info: string, field: string): string | undefined {
  return new RegExp(`^${field}:(.*)$`, 'm').exec(info)?.[1]?.trim();
}

/** Polls `check` until it returns a truthy value or the deadline passes; every wait in tests is bounded. */
export async function waitFor<T>(
  check: () => T | Promise<T>,
  options: { timeoutMs?: number; intervalMs?: number; what?: string } = {},
): Promise<NonNullable<T>> {
  const { timeoutMs = 10_000, intervalMs = 25, what = 'condition' } = options;
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value) return value as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
}
