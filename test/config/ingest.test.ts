import { describe, expect, test } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { summarizeConfig } from '../../src/config/summary.js';
import { configProblems } from './problems.js';

const BASE = `
redis: { url: redis://127.0.0.1:6379 }
imkit: { url: https://app.imkit.io }
accounts: [{ id: audit-bot, token: tok }]
`;

describe('ingest.copies and ingest.lease', () => {
  test('unset, every ingest process holds every account and config check says so', () => {
    const config = parseConfig(BASE, {});
    expect(config.ingest).toEqual({ copies: 'all', lease: 15_000, catchUpConcurrency: 16 });
    expect(summarizeConfig(config, 'bridge.yaml')).toContain(
      'ingest: every ingest process holds every account (copies all); at most 16 REST catch-ups at once',
    );
  });

  test('a wrong copies or lease names the field and the allowed range', () => {
    expect(configProblems(`${BASE}ingest: { copies: 0 }\n`)).toEqual([
      "ingest.copies: must be 'all' or a whole number from 1 to 64",
    ]);
    expect(configProblems(`${BASE}ingest: { copies: some }\n`)).toEqual([
      "ingest.copies: must be 'all' or a whole number from 1 to 64",
    ]);
    expect(configProblems(`${BASE}ingest: { lease: 2s }\n`)).toEqual([
      'ingest.lease: must be between 3s and 10m',
    ]);
    expect(configProblems(`${BASE}ingest: { lease: 11m }\n`)).toEqual([
      'ingest.lease: must be between 3s and 10m',
    ]);
    expect(configProblems(`${BASE}ingest: { catchUpConcurrency: 0 }\n`)).toEqual([
      'ingest.catchUpConcurrency: Too small: expected number to be >=1',
    ]);
  });

  test('a number of copies (also as a string from ${env:}) is summarised with what IMKIT sees', () => {
    const config = parseConfig(
      `${BASE}ingest: { copies: '\${env:COPIES}', lease: 20s, catchUpConcurrency: 4 }\n`,
      { COPIES: '2' },
    );
    expect(config.ingest).toEqual({ copies: 2, lease: 20_000, catchUpConcurrency: 4 });
    expect(summarizeConfig(config, 'bridge.yaml')).toContain(
      'ingest: each account on 2 live ingest processes, lease 20s (IMKIT sees 2 sockets per account); ' +
        'at most 4 REST catch-ups at once',
    );
  });
});
