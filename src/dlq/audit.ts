import { userInfo } from 'node:os';
import { pino } from 'pino';
import { createLogger, type Logger } from '../lifecycle/logger.js';
import { describeFilter, type DeadLetterFilter } from './filter.js';

/** Who replays or purges dead letters, and where the audit line goes: the CLI's OS user, a console session. */
export interface Auditor {
  readonly who: string;
  readonly logger: Logger;
}

/**
 * The CLI's auditor: the OS user running it (`$USER` when the uid has no name, as in many
 * containers), logging to stderr so stdout stays the command's answer, parseable with `--json`.
 */
export function localAuditor(): Auditor {
  return {
    who: osUser(),
    logger: createLogger({ level: 'info', destination: pino.destination({ fd: 2, sync: true }) }),
  };
}

function osUser(): string {
  try {
    const name = userInfo().username;
    if (name) return name;
  } catch {
    // No passwd entry for this uid.
  }
  return process.env.USER || process.env.LOGNAME || `uid ${process.getuid?.() ?? 'unknown'}`;
}

/**
 * Runs a replay or purge and logs one audit line for it, `{ audit, who, filter, ...counts }`: when it
 * completes, and also when it stops part-way after changing something (with what it had done by
 * then and the error), since removed dead letters are gone either way.
 */
export async function audited<T>(
  auditor: Auditor | undefined,
  action: string,
  what: { filter: DeadLetterFilter; id?: string; jobs?: readonly string[] },
  counts: () => Readonly<Record<string, number>>,
  work: () => Promise<T>,
): Promise<T> {
  if (!auditor) return work();
  const record = () => ({
    audit: action,
    who: auditor.who,
    filter: describeFilter(what.filter),
    ...(what.id !== undefined ? { id: what.id } : {}),
    ...(what.jobs !== undefined ? { jobs: what.jobs } : {}),
    ...counts(),
  });
  try {
    const result = await work();
    auditor.logger.info(record(), `${action} by ${auditor.who}: ${summary(counts())}`);
    return result;
  } catch (err) {
    // A command that failed before it changed anything (Redis unreachable) has nothing to audit;
    // its error is the command's own answer.
    if (Object.values(counts()).some((n) => n > 0)) {
      auditor.logger.error(
        { ...record(), err },
        `${action} by ${auditor.who} stopped part-way: ${summary(counts())}`,
      );
    }
    throw err;
  }
}

function summary(counts: Readonly<Record<string, number>>): string {
  return Object.entries(counts)
    .map(([name, n]) => `${name} ${n}`)
    .join(', ');
}
