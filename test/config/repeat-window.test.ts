import { describe, expect, test } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { runCli } from '../support/bridge-process.js';
import { configFile, configProblems as problems } from './problems.js';

const BASE = `
redis: { url: redis://127.0.0.1:6379 }
imkit: { url: https://app.imkit.io }
accounts: [{ id: audit-bot, token: t }]
`;

describe('repeatWindow', () => {
  test('defaults to 5 s and takes a duration', () => {
    expect(parseConfig(BASE, {}).repeatWindow).toBe(5_000);
    expect(parseConfig(`${BASE}repeatWindow: 2s\n`, {}).repeatWindow).toBe(2_000);
  });

  test('must be more than 0 and no longer than dedupWindow, which a shorter dedupWindow alone can break', () => {
    expect(problems(`${BASE}repeatWindow: 0\n`)).toEqual(['repeatWindow: must be more than 0']);
    expect(problems(`${BASE}repeatWindow: 11m\n`)).toEqual([
      expect.stringMatching(/^repeatWindow: must not be longer than dedupWindow \(600000 ms\)/),
    ]);
    expect(problems(`${BASE}dedupWindow: 2s\n`)).toEqual([
      expect.stringMatching(
        /^repeatWindow: must not be longer than dedupWindow \(2000 ms\); unset, it is 5s$/,
      ),
    ]);
    expect(problems(`${BASE}dedupWindow: 2s\nrepeatWindow: 2s\n`)).toEqual([]);
  });

  test('config check shows it in the summary', async () => {
    const path = configFile(`${BASE}repeatWindow: 750ms\n`);
    const result = await runCli(['config', 'check', '--config', path]);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('repeat window: 750 ms');
  });
});
