import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { expect, test } from 'vitest';
import { waitFor } from '../support/redis.js';

function demo(...args: string[]): {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
} {
  const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/demo.ts', ...args], {});
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  return { child, output: () => out, exited };
}

async function exitWithin(run: ReturnType<typeof demo>, ms: number): Promise<number | null> {
  const timer = setTimeout(() => run.child.kill('SIGKILL'), ms);
  const code = await run.exited;
  clearTimeout(timer);
  return code;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** `npm run demo -- --events N` is how a new user (and CI) checks the whole bridge works here. */
test('the demo generates traffic until N events are delivered and verified, then exits 0', async () => {
  const run = demo('--events', '200');
  const code = await exitWithin(run, 120_000);
  const out = run.output();
  expect(code, out).toBe(0);
  expect(out.match(/^verified {2}evt_/gm)?.length ?? 0).toBeGreaterThanOrEqual(200);
  expect(out).toMatch(/\d+ events delivered, \d+ signatures verified, 0 duplicate deliveries/);
});

/** `--destination redis-stream` shows a broker destination: every event lands in the stream once, and is printed. */
test('--destination redis-stream delivers N events to the webhook and into the stream, then exits 0', async () => {
  const run = demo('--destination', 'redis-stream', '--events', '50');
  const code = await exitWithin(run, 120_000);
  const out = run.output();
  expect(code, out).toBe(0);
  const landed = out.match(/^landed in redis-stream {2}evt_\w+/gm) ?? [];
  expect(landed.length, out).toBeGreaterThanOrEqual(50);
  expect(new Set(landed).size, out).toBe(landed.length);
  expect(out).toMatch(
    /^\d+ events landed in redis-stream \(stream imkit-demo-\d+:events on redis:\S+\), 0 duplicates$/m,
  );
  expect(out.match(/^verified {2}evt_/gm)?.length ?? 0).toBeGreaterThanOrEqual(50);
});

/** `npm run demo -- --keep` is a playground: what it prints must work as printed. */
test('--keep leaves a working bridge, prints commands that work, and Ctrl-C stops everything', async () => {
  const run = demo('--keep');
  try {
    const status = await waitFor(() => /^\s+curl -s (http:\S+\/status)$/m.exec(run.output())?.[1], {
      timeoutMs: 60_000,
      what: `the playground instructions:\n${run.output()}`,
    });
    const res = await fetch(status);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ accounts: [{ id: 'demo-bot', state: 'live' }] });

    const send = /^\s+curl -s -X POST --data '[^']*' (http:\S+)$/m.exec(run.output())![1]!;
    expect((await fetch(send, { method: 'POST', body: 'sent by the test' })).status).toBe(200);
    await waitFor(() => /^verified .*"sent by the test"/m.test(run.output()), {
      what: 'the sent message delivered',
    });

    for (const command of ['config check', 'dlq list']) {
      const line = new RegExp(`^\\s+(node \\S+ ${command} --config \\S+)$`, 'm').exec(run.output())![1]!;
      const [, ...args] = line.split(' ');
      // As pasted into a shell: no environment beyond the usual.
      const result = spawnSync(process.execPath, args, { env: { PATH: process.env.PATH }, encoding: 'utf8' });
      expect(result.status, `${line}\n${result.stderr}`).toBe(0);
    }

    const children = spawnSync('ps', ['-o', 'pid=', '--ppid', String(run.child.pid)], { encoding: 'utf8' })
      .stdout.split('\n')
      .map((l) => Number(l.trim()))
      .filter((pid) => pid > 0);
    expect(children.length).toBeGreaterThanOrEqual(2); // the bridge and redis-server
    run.child.kill('SIGINT');
    expect(await exitWithin(run, 45_000), run.output()).toBe(0);
    expect(children.filter(alive)).toEqual([]);
  } finally {
    if (run.child.exitCode === null) run.child.kill('SIGKILL');
  }
});
