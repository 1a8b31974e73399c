import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { waitFor } from './redis.js';

const CLI = resolve(import.meta.dirname, '../../dist/cli.js');

export type Role = 'all' | 'ingest' | 'worker';

/** Temp dirs `writeConfig` made, removed when this process exits (a test run also removes its whole run dir). */
const madeDirs: string[] = [];
process.once('exit', () => {
  for (const dir of madeDirs) rmSync(dir, { recursive: true, force: true });
});

/** Writes a config object as YAML into `dir` (default: a fresh temp dir, removed at exit) and returns its path. */
export function writeConfig(config: unknown, dir?: string): string {
  if (dir === undefined) {
    dir = mkdtempSync(join(process.env.IMKIT_BRIDGE_TEST_TMP ?? tmpdir(), 'imkit-bridge-cfg-'));
    madeDirs.push(dir);
  }
  const file = join(dir, 'bridge.yaml');
  writeFileSync(file, stringify(config));
  return file;
}

/** Runs the built CLI once to completion (config check, dlq list, ...). */
export async function runCli(
  args: string[],
  options: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...options.env } });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 30_000);
  const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
  clearTimeout(timer);
  return { code, stdout, stderr };
}

/**
 * `imkit-bridge run` as a real child process, so tests can SIGKILL it, SIGTERM it and watch its exit
 * code. The admin port is picked by the process (port 0) and read from its log.
 */
export class BridgeProcess {
  readonly logs: string[] = [];
  adminPort = 0;
  exitCode: number | null | undefined;
  exitSignal: NodeJS.Signals | null = null;
  private readonly child: ChildProcess;
  private readonly exited: Promise<void>;

  private constructor(configFile: string, role: Role, env: NodeJS.ProcessEnv) {
    this.child = spawn(process.execPath, [CLI, 'run', '--config', configFile, '--role', role], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let partial = '';
    const onData = (d: Buffer) => {
      const text = partial + d.toString();
      const lines = text.split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) {
        this.logs.push(line);
        const match = /"msg":"admin http listening"/.test(line) ? /"port":(\d+)/.exec(line) : null;
        if (match) this.adminPort = Number(match[1]);
      }
    };
    this.child.stdout!.on('data', onData);
    this.child.stderr!.on('data', onData);
    this.exited = new Promise((r) =>
      this.child.once('exit', (code, signal) => {
        this.exitCode = code;
        this.exitSignal = signal;
        r();
      }),
    );
  }

  /**
   * Starts the process and waits until its admin server listens (not until it is ready), for at most
   * `startTimeoutMs` (default 15 s; a config of thousands of accounts takes longer); a process that
   * does not get there is killed.
   */
  static async start(
    configFile: string,
    options: { role?: Role; env?: NodeJS.ProcessEnv; startTimeoutMs?: number } = {},
  ): Promise<BridgeProcess> {
    const bridge = new BridgeProcess(configFile, options.role ?? 'all', options.env ?? {});
    try {
      await waitFor(() => bridge.adminPort > 0 || bridge.exitCode !== undefined, {
        timeoutMs: options.startTimeoutMs ?? 15_000,
        what: 'bridge admin server',
      });
    } catch (err) {
      await bridge.kill9();
      throw err;
    }
    if (bridge.exitCode !== undefined) {
      throw new Error(`bridge exited with ${bridge.exitCode} at start:\n${bridge.logs.join('\n')}`);
    }
    return bridge;
  }

  get pid(): number {
    return this.child.pid!;
  }

  async get(path: string): Promise<{ status: number; body: string }> {
    const res = await fetch(`http://127.0.0.1:${this.adminPort}${path}`);
    return { status: res.status, body: await res.text() };
  }

  async waitReady(timeoutMs = 15_000): Promise<void> {
    await waitFor(async () => (await this.get('/readyz')).status === 200, {
      timeoutMs,
      what: 'bridge /readyz 200',
    });
  }

  /** Sends a signal and waits for the exit; returns how long the process took to exit. */
  async stop(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 40_000): Promise<number> {
    const started = Date.now();
    if (this.exitCode === undefined) this.child.kill(signal);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    await this.exited;
    clearTimeout(timer);
    return Date.now() - started;
  }

  kill9(): Promise<number> {
    return this.stop('SIGKILL');
  }

  /** Log records (pino JSON lines) that parse, for assertions. */
  records(): Record<string, unknown>[] {
    return this.logs.flatMap((line) => {
      try {
        return [JSON.parse(line) as Record<string, unknown>];
      } catch {
        return [];
      }
    });
  }
}
