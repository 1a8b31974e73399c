import { spawn } from 'node:child_process';
import { expect, test } from 'vitest';

/** `npm run demo -- --events N` is how a new user (and CI) checks the whole bridge works here. */
test('the demo delivers and verifies N events, then exits 0', async () => {
  const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/demo.ts', '--events', '6'], {});
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 90_000);
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  clearTimeout(timer);
  expect(code, out).toBe(0);
  expect(out.match(/^verified {2}evt_/gm)?.length ?? 0).toBeGreaterThanOrEqual(6);
  expect(out).toMatch(/\d+ events delivered, \d+ signatures verified, 0 duplicate deliveries/);
});
