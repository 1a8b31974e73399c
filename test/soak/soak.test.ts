import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BROKER_FAULTS, INFRA_FAULTS, INGEST_FAULTS, WEBHOOK_FAULTS } from '../../scripts/soak/faults.js';

const ROOT = resolve(import.meta.dirname, '../..');
const TSX = resolve(ROOT, 'node_modules/.bin/tsx');

/** Runs the soak script as a user would (after the build `npm test` does first) and collects its output. */
function runSoak(args: string[], timeoutMs: number): Promise<{ code: number | null; output: string }> {
  return new Promise((done) => {
    const child = spawn(TSX, ['scripts/soak.ts', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    // SIGTERM first so the soak can stop its bridge processes and redis-server.
    const timer = setTimeout(() => child.kill('SIGTERM'), timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      done({ code, output });
    });
  });
}

describe('chaos soak', () => {
  it('loses nothing, on webhooks and broker destinations, in a one-minute run under every fault kind (seed 1)', async () => {
    const { code, output } = await runSoak(['--minutes', '1', '--seed', '1'], 230_000);
    const line = /soak result: (\{.*\})/.exec(output);
    expect(line, output).not.toBeNull();
    const result = JSON.parse(line![1]!) as { lost: number; passed: boolean; failed: string[] };
    expect(result.lost, output).toBe(0);
    expect(result.failed, output).toEqual([]);
    // Every fault kind of the plan really ran (the plan includes each kind at least once).
    for (const kind of [...INGEST_FAULTS, ...INFRA_FAULTS, ...WEBHOOK_FAULTS, ...BROKER_FAULTS]) {
      expect(output, `fault ${kind} was not injected`).toMatch(new RegExp(`\\] fault ${kind} on `));
    }
    expect(output).not.toMatch(/injection error/);
    expect(code, output).toBe(0);
  }, 240_000);
});
