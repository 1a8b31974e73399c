import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../../src/config/load.js';
import { ConfigError } from '../../src/errors.js';

/** The problems `config check` would print for this YAML (none: an empty list). */
export function configProblems(text: string, env: NodeJS.ProcessEnv = {}): string[] {
  try {
    parseConfig(text, env);
  } catch (err) {
    if (err instanceof ConfigError) return [...err.problems];
    throw err;
  }
  return [];
}

/** Writes YAML to a fresh temp dir, for tests that run the CLI on it. */
export function configFile(text: string): string {
  const path = join(mkdtempSync(join(tmpdir(), 'imkit-bridge-config-')), 'bridge.yaml');
  writeFileSync(path, text);
  return path;
}
