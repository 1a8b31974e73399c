#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { loadConfig, readConfig, resolveConfigPath } from './config/load.js';
import { CommandLineError, ConfigError, PurgeNotConfirmedError, UsageError } from './errors.js';
import type { BridgeConfig } from './config/schema.js';
import { summarizeConfig } from './config/summary.js';
import { loadCodec } from './decode/codec.js';
import type { Role } from './lifecycle/daemon.js';
import { VERSION } from './version.js';

const USAGE = `imkit-bridge ${VERSION}

Usage:
  imkit-bridge run [--config FILE] [--role all|ingest|worker]
  imkit-bridge config check [--config FILE]
  imkit-bridge dlq list [--config FILE] [--destination ID] [FILTER] [--limit N] [--offset N] [--json]
  imkit-bridge dlq replay [--config FILE] [--destination ID] [FILTER | --id EVENT_ID] [--json]
  imkit-bridge dlq replay --quarantine [--config FILE] [FILTER | --id STREAM_ID] [--json]
      decode quarantined payloads again with the current limits and codecs; relay and
      remove those that now decode, keep and report the rest
  imkit-bridge dlq purge [--config FILE] [--destination ID] [FILTER] [--yes] [--json]
  imkit-bridge dlq purge --quarantine [--config FILE] [FILTER] [--yes] [--json]
      remove matching dead letters (quarantined payloads) for good; without --yes, only
      print what would be removed and exit 1

FILTER: --since TIME (inclusive), --until TIME (exclusive), --type TYPE (repeatable: any of them).
TIME is when the entry was dead-lettered (quarantined): an ISO time (2026-05-01T22:00:00Z; without
an offset, local time) or a duration ago (90s, 30m, 2h, 1d). For quarantine, TYPE is the IMKIT
event name. A batch job is replayed when any of its events is of a TYPE, purged only when all are.
dlq list shows the newest 100 entries of each destination and of quarantine (--limit N for more,
--offset N to skip the newest N); --json prints every entry unless --limit is given.
--webhook ID is an alias of --destination ID. replay and purge log an audit line to stderr.

Config file: --config, else $IMKIT_BRIDGE_CONFIG, else config/bridge.yaml.
Exit codes: 0 clean stop, 1 config or usage error, 2 fatal runtime error.`;

export const EXIT_OK = 0;
export const EXIT_USAGE = 1;
export const EXIT_FATAL = 2;

const ROLES: readonly Role[] = ['all', 'ingest', 'worker'];

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      config: { type: 'string', short: 'c' },
      role: { type: 'string' },
      destination: { type: 'string' },
      webhook: { type: 'string' },
      id: { type: 'string' },
      limit: { type: 'string' },
      offset: { type: 'string' },
      json: { type: 'boolean' },
      quarantine: { type: 'boolean' },
      since: { type: 'string' },
      until: { type: 'string' },
      type: { type: 'string', multiple: true },
      yes: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
      version: { type: 'boolean' },
    },
  });
  if (values.version) {
    process.stdout.write(`${VERSION}\n`);
    return EXIT_OK;
  }
  const command = positionals.join(' ');
  if (values.help || command === '' || command === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return values.help || command === 'help' ? EXIT_OK : EXIT_USAGE;
  }
  const configPath = resolveConfigPath(values.config, process.env);
  const destination = destinationOption(values.destination, values.webhook);
  const json = values.json ?? false;
  const filterInput = { destination, since: values.since, until: values.until, types: values.type };
  if (values.id !== undefined && (values.since ?? values.until ?? values.type) !== undefined) {
    throw new CommandLineError('--id names one entry; --since, --until and --type do not apply to it');
  }

  switch (command) {
    case 'config check': {
      const { config, notes } = readConfig(configPath, { accountCredentials: false });
      await checkCodecs(config);
      process.stdout.write(`${[summarizeConfig(config, configPath), ...notes].join('\n')}\n`);
      return EXIT_OK;
    }
    case 'run': {
      const role = values.role ?? 'all';
      if (!(ROLES as readonly string[]).includes(role))
        throw new CommandLineError(`--role must be one of ${ROLES.join(', ')}`);
      // Only processes that open IMKIT sessions need the account credentials.
      const config = loadConfig(configPath, { accountCredentials: role !== 'worker' });
      const { runDaemon } = await import('./lifecycle/daemon.js');
      // Exit explicitly: a stopped daemon must not linger on a forgotten handle.
      return process.exit(await runDaemon(config, role as Role));
    }
    case 'dlq list': {
      const config = loadConfig(configPath, { accountCredentials: false });
      const { listDeadLetters, formatDeadLetters, DEFAULT_TEXT_LIMIT } =
        await import('./dlq/dead-letters.js');
      const { parseFilter } = await import('./dlq/filter.js');
      const limit = count('--limit', values.limit, 1) ?? (json ? undefined : DEFAULT_TEXT_LIMIT);
      const offset = count('--offset', values.offset, 0) ?? 0;
      const list = await listDeadLetters(config, {
        ...parseFilter(filterInput),
        offset,
        ...(limit !== undefined ? { limit } : {}),
      });
      process.stdout.write(`${formatDeadLetters(list, { json })}\n`);
      return EXIT_OK;
    }
    case 'dlq replay': {
      const config = loadConfig(configPath, { accountCredentials: false });
      const { parseFilter } = await import('./dlq/filter.js');
      const { localAuditor } = await import('./dlq/audit.js');
      const filter = parseFilter(filterInput);
      if (values.quarantine) {
        noDestination(destination);
        const { replayQuarantine, formatQuarantineReplay } = await import('./dlq/quarantine.js');
        const result = await replayQuarantine(config, { ...filter, id: values.id, audit: localAuditor() });
        process.stdout.write(`${formatQuarantineReplay(result, { json })}\n`);
        return EXIT_OK;
      }
      const { replayDeadLetters, formatReplay } = await import('./dlq/dead-letters.js');
      const result = await replayDeadLetters(config, { ...filter, id: values.id, audit: localAuditor() });
      process.stdout.write(`${formatReplay(result, { json })}\n`);
      return EXIT_OK;
    }
    case 'dlq purge': {
      if (values.id !== undefined)
        throw new CommandLineError('dlq purge takes no --id; select with a filter');
      const config = loadConfig(configPath, { accountCredentials: false });
      const { parseFilter } = await import('./dlq/filter.js');
      const { localAuditor } = await import('./dlq/audit.js');
      const filter = parseFilter(filterInput);
      const dryRun = !values.yes;
      let matched: number;
      let what: string;
      if (values.quarantine) {
        noDestination(destination);
        const { purgeQuarantine, formatQuarantinePurge } = await import('./dlq/quarantine.js');
        const result = await purgeQuarantine(config, { ...filter, dryRun, audit: localAuditor() });
        process.stdout.write(`${formatQuarantinePurge(result, { json })}\n`);
        [matched, what] = [result.matched, 'quarantined payload(s)'];
      } else {
        const { purgeDeadLetters, formatPurge } = await import('./dlq/dead-letters.js');
        const result = await purgeDeadLetters(config, { ...filter, dryRun, audit: localAuditor() });
        process.stdout.write(`${formatPurge(result, { json })}\n`);
        [matched, what] = [result.matched, 'dead letter(s)'];
      }
      if (dryRun) {
        throw new PurgeNotConfirmedError(
          `nothing removed: run it again with --yes to remove these ${matched} ${what} for good`,
        );
      }
      return EXIT_OK;
    }
    default:
      throw new CommandLineError(`unknown command "${command}"`);
  }
}

/** `--destination ID`, or `--webhook ID`, its alias from before 0.2; both given must agree. */
function destinationOption(destination: string | undefined, webhook: string | undefined): string | undefined {
  if (destination !== undefined && webhook !== undefined && destination !== webhook) {
    throw new CommandLineError(
      `--webhook is an alias of --destination; given both, they must name the same destination ("${destination}" vs "${webhook}")`,
    );
  }
  return destination ?? webhook;
}

function noDestination(destination: string | undefined): void {
  if (destination !== undefined) {
    throw new CommandLineError(
      '--destination does not apply to --quarantine: a payload goes to every destination that wants it',
    );
  }
}

/** A whole number of at least `min` from the command line, or undefined when the option is absent. */
function count(option: string, value: string | undefined, min: number): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < min)
    throw new CommandLineError(`${option} takes a whole number of at least ${min}, not "${value}"`);
  return n;
}

/** A custom codec is code: `config check` loads it, so a wrong path or a missing key fails here, not at deploy. */
async function checkCodecs(config: BridgeConfig): Promise<void> {
  const problems: string[] = [];
  for (const [i, account] of config.accounts.entries()) {
    if (account.encoding !== 'custom' || !account.codec) continue;
    try {
      await loadCodec(account.codec);
    } catch (err) {
      problems.push(`accounts[${i}].codec: ${(err as Error).message.split('\n')[0]}`);
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.problems.join('\n')}\n`);
      process.exitCode = EXIT_USAGE;
    } else if (
      err instanceof CommandLineError ||
      (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')
    ) {
      process.stderr.write(`${(err as Error).message}\n\n${USAGE}\n`);
      process.exitCode = EXIT_USAGE;
    } else if (err instanceof UsageError) {
      process.stderr.write(`${err.message}\n`);
      process.exitCode = EXIT_USAGE;
    } else {
      process.stderr.write(`fatal: ${(err as Error)?.message ?? String(err)}\n`);
      process.exitCode = EXIT_FATAL;
    }
  },
);
