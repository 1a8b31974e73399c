import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { expect, test } from 'vitest';

/**
 * Everything a user gets is this repository: docs, config, code comments and help texts must not
 * send them to a file they do not have (a spec, a reference note, a build machine's path).
 */
const ROOT = resolve(import.meta.dirname, '../..');
const SCANNED = [
  'README.md',
  'Dockerfile',
  'package.json',
  '.ci',
  'docs',
  'config',
  'examples',
  'src',
  'scripts',
  'helm',
  'bench',
  'test/sim',
];
const SKIPPED_DIRS = new Set(['node_modules', 'dist', 'results']);
const TEXT = /\.(md|ts|mts|mjs|js|json|ya?ml|tpl|txt|sh)$|^(Dockerfile|run)$/;

const OUTSIDE: [RegExp, string][] = [
  [/\/work\//, 'a path on a build machine'],
  [/(^|[\s"'`(/])shared\//, 'a shared/ folder outside the repository'],
  [/\bSPEC\b/, 'a SPEC document users do not have'],
  [/reference\/imkit\.md/, 'a reference note outside the repository'],
  [/(^|[\s"'`(])\/(home|Users|root)\//, 'a home directory'],
];

function files(path: string): string[] {
  const full = join(ROOT, path);
  if (!existsSync(full)) return [];
  if (!statSync(full).isDirectory()) return TEXT.test(path.split('/').pop()!) ? [path] : [];
  return readdirSync(full).flatMap((name) => (SKIPPED_DIRS.has(name) ? [] : files(join(path, name))));
}

test('nothing points outside the repository', () => {
  const found: string[] = [];
  const scanned = SCANNED.flatMap(files);
  expect(scanned.length).toBeGreaterThan(50);
  for (const file of scanned) {
    readFileSync(join(ROOT, file), 'utf8')
      .split('\n')
      .forEach((line, i) => {
        for (const [pattern, what] of OUTSIDE) {
          if (pattern.test(line)) found.push(`${file}:${i + 1}: ${what}: ${line.trim()}`);
        }
      });
  }
  expect(found).toEqual([]);
});

test('relative links in the Markdown docs lead to files in the repository', () => {
  const broken: string[] = [];
  for (const file of SCANNED.flatMap(files).filter((f) => f.endsWith('.md'))) {
    const text = readFileSync(join(ROOT, file), 'utf8');
    for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      if (/^[a-z]+:/i.test(target!) || target!.startsWith('#')) continue;
      const path = resolve(ROOT, dirname(file), target!.split('#')[0]!);
      if (relative(ROOT, path).startsWith('..') || !existsSync(path)) broken.push(`${file}: ${target}`);
    }
  }
  expect(broken).toEqual([]);
});
