import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type ConnectionOptions, type NatsConnection } from '@nats-io/transport-node';
import { freePort } from './redis.js';

/** `$NATS_SERVER_BIN`, else `nats-server` on PATH, else Debian's /usr/sbin/nats-server. */
export function natsServerBinary(): string | undefined {
  const candidates = [process.env.NATS_SERVER_BIN, 'nats-server', '/usr/sbin/nats-server'];
  for (const candidate of candidates) {
    if (!candidate) continue;
    if (candidate.includes('/') && !existsSync(candidate)) continue;
    if (spawnSync(candidate, ['--version'], { stdio: 'ignore' }).status === 0) return candidate;
  }
  return undefined;
}

export interface NatsServerOptions {
  /** The server's max_payload in bytes (its default is 1 MiB). */
  readonly maxPayload?: number;
  /** Clients must log in with this user and password. */
  readonly user?: { readonly name: string; readonly password: string };
  /** Clients must present this token. */
  readonly token?: string;
}

/**
 * A private nats-server with JetStream on a free loopback port and a temp store, for tests that kill
 * and restart the broker: `kill()` is a SIGKILL, `start()` again reuses the port and the store, so
 * what the stream had acknowledged is there after the restart.
 */
export class NatsServer {
  readonly dir = mkdtempSync(join(tmpdir(), 'imkit-bridge-nats-'));
  private child: ChildProcess | undefined;

  private constructor(
    readonly port: number,
    private readonly binary: string,
    private readonly options: NatsServerOptions,
  ) {
    writeFileSync(join(this.dir, 'nats.conf'), this.configText());
  }

  static async start(options: NatsServerOptions = {}): Promise<NatsServer> {
    const binary = natsServerBinary();
    if (!binary) throw new Error('nats-server not found: apt-get install nats-server');
    const server = new NatsServer(await freePort(), binary, options);
    await server.startProcess();
    return server;
  }

  /** A client URL with no credentials. */
  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  /** Connection options for the test's own client (credentials included). */
  get clientOptions(): ConnectionOptions {
    const { user, token } = this.options;
    return {
      servers: `127.0.0.1:${this.port}`,
      ...(user ? { user: user.name, pass: user.password } : {}),
      ...(token ? { token } : {}),
    };
  }

  async startProcess(): Promise<void> {
    if (this.child) return;
    const child = spawn(this.binary, ['-c', join(this.dir, 'nats.conf')], { stdio: 'ignore' });
    this.child = child;
    child.once('exit', () => {
      if (this.child === child) this.child = undefined;
    });
    await this.waitUntilReady(10_000);
  }

  /** An abrupt crash: no flush, no goodbye to clients. */
  async kill(): Promise<void> {
    const child = this.child;
    if (!child) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGKILL');
    await exited;
    this.child = undefined;
  }

  async close(): Promise<void> {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }

  private configText(): string {
    const { maxPayload, user, token } = this.options;
    const lines = [
      'host: 127.0.0.1',
      `port: ${this.port}`,
      `jetstream { store_dir: ${JSON.stringify(join(this.dir, 'store'))} }`,
    ];
    if (maxPayload !== undefined) lines.push(`max_payload: ${maxPayload}`);
    if (user) {
      lines.push(
        `authorization { user: ${JSON.stringify(user.name)}, password: ${JSON.stringify(user.password)} }`,
      );
    }
    if (token) lines.push(`authorization { token: ${JSON.stringify(token)} }`);
    return `${lines.join('\n')}\n`;
  }

  /** Ready once JetStream answers, which is after the store has been recovered. */
  private async waitUntilReady(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last: unknown;
    while (Date.now() < deadline) {
      if (!this.child) throw new Error(`nats-server on port ${this.port} exited at start`);
      let nc: NatsConnection | undefined;
      try {
        nc = await connect({ ...this.clientOptions, timeout: 1_000, reconnect: false });
        await (await jetstreamManager(nc)).getAccountInfo();
        return;
      } catch (err) {
        last = err;
      } finally {
        await nc?.close();
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`nats-server on port ${this.port} not ready within ${timeoutMs} ms: ${String(last)}`);
  }
}

/** The NATS a suite shares when it does not stop the server: `NATS_URL`, default the machine's. */
export function sharedNatsUrl(): string {
  return process.env.NATS_URL ?? 'nats://127.0.0.1:4222';
}

/** A name no other test (or run) uses, for streams and subjects. */
export function uniqueName(): string {
  return `imkit-t-${process.pid}-${Math.random().toString(36).slice(2, 10)}`;
}
