import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hasRedisServer } from './redis.js';

/** Fail the whole run with one clear line instead of dozens of confusing suite failures. */
export default function setup(): () => void {
  if (!hasRedisServer()) {
    throw new Error('imkit-bridge tests need redis-server on PATH: apt-get install redis-server');
  }
  // The run's config files (test/support/bridge-process.ts) go under one directory, removed at the end.
  const runDir = mkdtempSync(join(tmpdir(), 'imkit-bridge-test-'));
  process.env.IMKIT_BRIDGE_TEST_TMP = runDir;
  return () => rmSync(runDir, { recursive: true, force: true });
}
