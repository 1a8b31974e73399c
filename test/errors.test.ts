import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { expect, it } from 'vitest';
import { ERROR_CODES } from '../src/errors.js';

const root = resolve(import.meta.dirname, '..');
const read = (path: string) => readFileSync(resolve(root, path), 'utf8');

it('docs/errors.md lists exactly the codes of src/errors.ts, each with its meaning', () => {
  const rows = new Map(
    [...read('docs/errors.md').matchAll(/^\| `(BRIDGE_ERR_[A-Z_]+)` \| (.+) \|$/gm)].map((m) => [m[1], m[2]]),
  );
  expect(Object.fromEntries(rows)).toEqual(ERROR_CODES);
});

it('every error class declares a catalogued code, and no two classes share one', () => {
  const declared = [...read('src/errors.ts').matchAll(/readonly code(?:: ErrorCode)? = '([A-Z_]+)'/g)].map(
    (m) => m[1],
  );
  expect([...declared].sort()).toEqual(Object.keys(ERROR_CODES).sort());
});
