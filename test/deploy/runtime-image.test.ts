import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { stringify } from 'yaml';
import { ImkitSimulator } from '../sim/imkit-simulator.js';
import { freePort, RedisServer, waitFor } from '../support/redis.js';
import { readStages, stage, type Copy, type Stage } from './dockerfile.js';

/**
 * No Docker engine runs here, so this reproduces the runtime stage's file set instead: what its
 * COPY instructions bring in (dist/ from the build stage, package files from the context), then
 * the stage's own `npm ci --omit=dev`, in a temporary directory. The bridge must then check a
 * config and run against IMKIT and Redis from there, so a runtime dependency left in
 * devDependencies, or a file the image forgets, fails this suite.
 */

const REPO = process.cwd();
const SECRET = `whsec_${Buffer.alloc(32, 3).toString('base64')}`;

let runtime: Stage;
let appDir: string;

/** Copies what the runtime stage's COPY instructions bring in, from the context or the build stage. */
function copyInto(target: string, copies: readonly Copy[]): void {
  const stages = readStages();
  for (const copy of copies) {
    for (const source of copy.sources) {
      let from: string;
      if (copy.from === undefined) {
        from = join(REPO, source);
      } else {
        // The build stage is the repository at its WORKDIR after `npm run build`.
        const relative = posix.relative(stage(copy.from, stages).workdir, source);
        if (relative.startsWith('..'))
          throw new Error(`COPY --from=${copy.from} ${source} is outside its WORKDIR`);
        from = join(REPO, relative);
      }
      if (!existsSync(from))
        throw new Error(`the runtime stage copies ${source}, which the build does not produce`);
      const destination = copy.destination.endsWith('/')
        ? join(target, copy.destination, posix.basename(source))
        : join(target, copy.destination);
      cpSync(from, destination, { recursive: true });
    }
  }
}

function run(
  command: string,
  args: string[],
  options: { cwd: string; env?: NodeJS.ProcessEnv },
): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'], timeout: 180_000 });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.once('error', reject);
    child.once('exit', (code) =>
      code === 0
        ? resolve(output)
        : reject(new Error(`${command} ${args.join(' ')} exited ${code}:\n${output}`)),
    );
  });
}

/** The stage's `npm ci` command exactly, made offline-friendly for the test machine. */
function runtimeInstallCommand(): string[] {
  const command = runtime.runs
    .flatMap((run) => run.split('&&').map((part) => part.trim()))
    .find((part) => part.startsWith('npm ci'));
  if (!command) throw new Error('the runtime stage runs no npm ci');
  return [...command.split(/\s+/).slice(1), '--prefer-offline'];
}

/** The environment the image sets, with the config path pointed at a file this test writes. */
function imageEnv(configFile: string): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH, HOME: process.env.HOME, ...runtime.env, IMKIT_BRIDGE_CONFIG: configFile };
}

beforeAll(async () => {
  runtime = stage('runtime');
  appDir = mkdtempSync(join(tmpdir(), 'imkit-bridge-image-'));
  // As in a Docker build, the build stage and the runtime stage's install run side by side.
  const fromContext = runtime.copies.filter((c) => c.from === undefined);
  copyInto(appDir, fromContext);
  const install = run('npm', runtimeInstallCommand(), {
    cwd: appDir,
    env: { ...process.env, ...runtime.env },
  });
  const build = run('npm', ['run', 'build'], { cwd: REPO });
  await Promise.all([install, build]);
  copyInto(
    appDir,
    runtime.copies.filter((c) => c.from !== undefined),
  );
}, 240_000);

afterAll(() => {
  if (appDir) rmSync(appDir, { recursive: true, force: true });
});

describe('runtime image contents', () => {
  test('hold production dependencies only', () => {
    expect(existsSync(join(appDir, 'node_modules', 'bullmq'))).toBe(true);
    for (const devOnly of ['typescript', 'vitest', 'tsx', 'socket.io', 'aws-cdk-lib']) {
      expect(existsSync(join(appDir, 'node_modules', devOnly)), devOnly).toBe(false);
    }
    expect(existsSync(join(appDir, 'src')), 'TypeScript sources stay in the build stage').toBe(false);
  });

  test('`config check` passes from the image file set, reading the image config path variable', () => {
    const file = join(appDir, 'check.yaml');
    writeFileSync(
      file,
      stringify({
        redis: { url: 'redis://127.0.0.1:6379' },
        imkit: { url: 'http://127.0.0.1:1', clientKey: '${env:IMKIT_CLIENT_KEY}' },
        accounts: [{ id: 'audit-bot', token: '${env:AUDIT_BOT_TOKEN}' }],
        webhooks: [{ id: 'audit', url: 'http://127.0.0.1:1/hook', secret: SECRET }],
      }),
    );
    const env = { ...imageEnv(file), IMKIT_CLIENT_KEY: 'k', AUDIT_BOT_TOKEN: 't' };
    const [node, ...args] = runtime.cmd;
    const check = spawnSync(node!, [...args.slice(0, -1), 'config', 'check'], {
      cwd: appDir,
      env,
      encoding: 'utf8',
    });
    expect(check.status, check.stderr).toBe(0);
    expect(check.stdout).toContain('audit-bot');

    // As the chart runs it: --config wins over the image's variable; without the Secret's env it notes
    // the account token that the ingest role will need.
    const missing = spawnSync(node!, [...args.slice(0, -1), 'config', 'check', '--config', file], {
      cwd: appDir,
      env: imageEnv(join(appDir, 'absent.yaml')),
      encoding: 'utf8',
    });
    expect(missing.status, missing.stderr).toBe(0);
    expect(missing.stdout).toContain(
      'accounts[0].token: ${env:AUDIT_BOT_TOKEN} is not set; needed by run --role all|ingest',
    );
  });

  describe('`run` (the image CMD) against the IMKIT simulator and a private Redis', () => {
    let redis: RedisServer;
    let sim: ImkitSimulator;
    let receiver: Server;
    let bridge: ChildProcess | undefined;
    let output = '';
    const received: { headers: Record<string, string>; body: string }[] = [];

    beforeAll(async () => {
      [redis, sim] = await Promise.all([RedisServer.start(), ImkitSimulator.start()]);
      receiver = createServer((req, res) => {
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => {
          received.push({
            headers: req.headers as Record<string, string>,
            body: Buffer.concat(chunks).toString('utf8'),
          });
          res.writeHead(204).end();
        });
      });
      await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    });

    afterAll(async () => {
      if (bridge && bridge.exitCode === null) bridge.kill('SIGKILL');
      await new Promise<void>((resolve) => receiver.close(() => resolve()));
      await Promise.all([sim.close(), redis.close()]);
    });

    test('becomes ready, relays a chat message to a signed webhook and exits 0 on SIGTERM', async () => {
      const port = await freePort();
      const receiverPort = (receiver.address() as { port: number }).port;
      const file = join(appDir, 'run.yaml');
      writeFileSync(
        file,
        stringify({
          redis: { url: redis.url, prefix: 'image-test' },
          server: { host: '127.0.0.1', port },
          imkit: { url: sim.url, clientKey: sim.clientKey },
          accounts: [{ id: 'audit-bot', token: '${env:AUDIT_BOT_TOKEN}' }],
          webhooks: [
            {
              id: 'audit',
              url: `http://127.0.0.1:${receiverPort}/hook`,
              secret: SECRET,
              retry: { schedule: ['100ms'] },
            },
          ],
          shutdownTimeout: '5s',
          log: { level: 'warn' },
        }),
      );
      const [node, ...args] = runtime.cmd;
      const child = spawn(node!, args, {
        cwd: appDir,
        env: { ...imageEnv(file), AUDIT_BOT_TOKEN: sim.issueToken('audit-bot') },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      bridge = child;
      child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
      child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));

      await waitFor(
        async () => {
          if (child.exitCode !== null) throw new Error(`bridge exited ${child.exitCode}: ${output}`);
          const res = await fetch(`http://127.0.0.1:${port}/readyz`);
          return res.status === 200;
        },
        { timeoutMs: 20_000, intervalMs: 100, what: '/readyz 200' },
      ).catch((err: Error) => {
        throw new Error(`${err.message}\nbridge output:\n${output}`);
      });

      sim.sendMessage('room-1', 'hello from the image test', {
        members: ['audit-bot', 'alice'],
        sender: 'alice',
      });
      const delivery = await waitFor(() => received[0], { timeoutMs: 10_000, what: 'a webhook delivery' });
      const event = new Webhook(SECRET).verify(delivery.body, delivery.headers) as {
        type: string;
        account: string;
      };
      expect(event).toMatchObject({ type: 'chat message', account: 'audit-bot' });

      child.kill('SIGTERM');
      const code = await Promise.race([
        exited,
        new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), 10_000)),
      ]);
      expect(code, output).toBe(0);
    });
  });
});
