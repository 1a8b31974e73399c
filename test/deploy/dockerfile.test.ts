import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { validate } from 'dockerfile-utils';
import { describe, expect, test } from 'vitest';
import { DOCKERFILE, readStages, stage } from './dockerfile.js';

const text = readFileSync(DOCKERFILE, 'utf8');

/**
 * Whether the build context keeps `path`, for the subset of .dockerignore syntax this project
 * uses (`*` and exact `!path` re-includes). Anything else throws, so a richer pattern cannot make
 * this check pass by accident.
 */
function contextKeeps(path: string, ignoreText: string): boolean {
  let kept = true;
  const normalized = path.replace(/^\.\//, '').replace(/\/$/, '');
  for (const raw of ignoreText.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const negated = line.startsWith('!');
    const pattern = (negated ? line.slice(1) : line).replace(/^\//, '');
    let matches: boolean;
    if (pattern === '*') matches = true;
    else if (/^[A-Za-z0-9._/-]+$/.test(pattern)) {
      matches = normalized === pattern || normalized.startsWith(`${pattern}/`);
    } else throw new Error(`.dockerignore pattern "${line}" is beyond what this test understands`);
    if (matches) kept = negated;
  }
  return kept;
}

describe('Dockerfile', () => {
  test('passes dockerfile-utils lint with no diagnostics at all', () => {
    expect(validate(text)).toEqual([]);
  });

  test('the linter really runs: a broken Dockerfile is reported', () => {
    const broken = text.replace('EXPOSE 9464', 'EXPOSE 94x64').replace('USER 1000:1000', 'USR 1000:1000');
    const messages = validate(broken).map((d) => d.message);
    expect(messages.length).toBeGreaterThanOrEqual(2);
  });

  test('builds with dev dependencies and ships a production-only runtime stage', () => {
    const stages = readStages(text);
    expect(stages.map((s) => s.name)).toEqual(['build', 'runtime']);
    const build = stage('build', stages);
    expect(build.runs.some((r) => /^npm ci(?!.*--omit=dev)/.test(r))).toBe(true);
    expect(build.runs).toContain('npm run build');

    const runtime = stage('runtime', stages);
    expect(runtime.runs.some((r) => /^npm ci --omit=dev\b/.test(r))).toBe(true);
    expect(runtime.env.NODE_ENV).toBe('production');
    expect(runtime.env.IMKIT_BRIDGE_CONFIG).toBe('/etc/imkit-bridge/bridge.yaml');
    // Only the compiled output comes from the build stage: no TypeScript, no dev dependencies.
    expect(runtime.copies.filter((c) => c.from !== undefined)).toEqual([
      { from: 'build', sources: ['/app/dist'], destination: './dist' },
    ]);
  });

  test('runtime is unprivileged, has an init as PID 1 and an exec-form CMD', () => {
    const runtime = stage('runtime', readStages(text));
    const [uid] = (runtime.user ?? '').split(':');
    expect(uid).toMatch(/^\d+$/);
    expect(Number(uid)).toBeGreaterThan(0);
    expect(runtime.runs.some((r) => /apt-get install .*\btini\b/.test(r))).toBe(true);
    expect(runtime.entrypoint).toEqual(['/usr/bin/tini', '--']);
    expect(runtime.cmd).toEqual(['node', 'dist/cli.js', 'run']);
  });

  test('both stages are a slim image of an even-numbered (LTS) Node major', () => {
    const image = /^ARG NODE_IMAGE=(\S+)$/m.exec(text)?.[1] ?? '';
    const major = Number(/^node:(\d+)-[a-z]+-slim$/.exec(image)?.[1]);
    expect(major % 2, `image ${image}`).toBe(0);
    expect(major).toBeGreaterThanOrEqual(22);
    expect(text.match(/^FROM \$\{NODE_IMAGE\} AS /gm)).toHaveLength(2);
  });

  test('.dockerignore keeps everything the Dockerfile copies and nothing local', () => {
    const ignore = readFileSync(join(process.cwd(), '.dockerignore'), 'utf8');
    const fromContext = readStages(text).flatMap((s) => s.copies.filter((c) => c.from === undefined));
    const sources = fromContext.flatMap((c) => c.sources);
    expect(sources.length).toBeGreaterThan(0);
    for (const source of sources) expect(contextKeeps(source, ignore), source).toBe(true);
    for (const local of ['node_modules', 'dist', '.git', 'test', 'config/bridge.yaml', '.env']) {
      expect(contextKeeps(local, ignore), local).toBe(false);
    }
  });
});
