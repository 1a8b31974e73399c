import { parseDuration } from '../config/duration.js';
import { InvalidFilterError } from '../errors.js';
import { eventsOf, type DeliveryJobData } from '../queue/job.js';

/**
 * Which dead letters `dlq list|replay|purge` (and the console) work on; every part that is set must
 * match. Times are epoch ms of the moment an entry became a dead letter: when its job failed for good
 * (what `dlq list` shows as FAILED AT), or when a payload was quarantined (the time in its stream
 * id, which is when it was received). That is what "the dead letters of last night's outage" means
 * to an operator, and both are indexed, so a window is read without scanning what lies outside it.
 * `since` is inclusive and `until` exclusive: consecutive windows neither overlap nor leave a gap.
 */
export interface DeadLetterFilter {
  readonly destination?: string;
  /** Event types; for quarantine entries the IMKIT event name. Absent or empty: every type. */
  readonly types?: readonly string[];
  readonly since?: number;
  readonly until?: number;
}

/** A filter as an operator types it: times as ISO times or durations ago (`2h`). */
export interface FilterInput {
  readonly destination?: string;
  readonly types?: readonly string[];
  readonly since?: string;
  readonly until?: string;
}

/** A filter as logged and printed with `--json`: times as ISO strings, only the parts that are set. */
export interface FilterDescription {
  readonly destination?: string;
  readonly types?: readonly string[];
  readonly since?: string;
  readonly until?: string;
}

/**
 * How a batch job (rare in the failed set: see dead-letters.ts) meets a type filter. It is replayed or
 * removed only whole, so: replay takes it when any of its events matches (nothing asked for stays
 * dead; the others are events that were due anyway, sent with their own ids), purge only when all
 * do (nothing is deleted that was not asked for).
 */
export type BatchMatch = 'any' | 'every';

const ISO_TIME = /^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,3})?)?(?:Z|[+-]\d{2}:?\d{2})?)?$/;
const DURATION_AGO = /^\d+(?:\.\d+)?\s*(?:ms|s|m|h|d)$/;

/** Resolves durations against `now`; throws InvalidFilterError naming the part that is wrong. */
export function parseFilter(input: FilterInput, now = Date.now()): DeadLetterFilter {
  const since = input.since === undefined ? undefined : parseTime('since', input.since, now);
  const until = input.until === undefined ? undefined : parseTime('until', input.until, now);
  if (since !== undefined && until !== undefined && since >= until) {
    throw new InvalidFilterError(
      `since (${new Date(since).toISOString()}) must be before until (${new Date(until).toISOString()})`,
    );
  }
  const types = input.types?.map((type) => type.trim());
  if (types?.some((type) => type === '')) throw new InvalidFilterError('a type must not be empty');
  return Object.freeze({
    ...(input.destination !== undefined ? { destination: input.destination } : {}),
    ...(types && types.length > 0 ? { types: Object.freeze([...new Set(types)]) } : {}),
    ...(since !== undefined ? { since } : {}),
    ...(until !== undefined ? { until } : {}),
  });
}

/**
 * `2026-05-01T22:00:00Z`, `2026-05-01T22:00+02:00`, `2026-05-01` (a time without an offset, and a
 * bare date, are local time), or a duration ago: `90s`, `30m`, `2h`, `1d`.
 */
function parseTime(part: 'since' | 'until', text: string, now: number): number {
  const value = text.trim();
  if (DURATION_AGO.test(value)) return now - parseDuration(value)!;
  if (ISO_TIME.test(value)) {
    const local = value.length === 10 ? `${value}T00:00` : value.replace(' ', 'T');
    const at = Date.parse(local);
    if (Number.isFinite(at)) return at;
  }
  throw new InvalidFilterError(
    `${part} "${text}" is neither an ISO time (2026-05-01T22:00:00Z) nor a duration ago (90s, 30m, 2h, 1d)`,
  );
}

export function describeFilter(filter: DeadLetterFilter): FilterDescription {
  return {
    ...(filter.destination !== undefined ? { destination: filter.destination } : {}),
    ...(filter.types ? { types: filter.types } : {}),
    ...(filter.since !== undefined ? { since: new Date(filter.since).toISOString() } : {}),
    ...(filter.until !== undefined ? { until: new Date(filter.until).toISOString() } : {}),
  };
}

export function hasTypes(filter: DeadLetterFilter): boolean {
  return (filter.types?.length ?? 0) > 0;
}

export function typeMatches(filter: DeadLetterFilter, type: string): boolean {
  return !filter.types || filter.types.length === 0 || filter.types.includes(type);
}

export function timeMatches(filter: DeadLetterFilter, at: number): boolean {
  return (
    (filter.since === undefined || at >= filter.since) && (filter.until === undefined || at < filter.until)
  );
}

/** Whether a failed job's events meet the type filter, `any` or `every` of them (one for an event job). */
export function jobTypesMatch(filter: DeadLetterFilter, data: DeliveryJobData, match: BatchMatch): boolean {
  const events = eventsOf(data);
  return match === 'any'
    ? events.some((e) => typeMatches(filter, e.type))
    : events.every((e) => typeMatches(filter, e.type));
}

/**
 * ZRANGEBYSCORE bounds on a failed set (scored by failure time) for the filter's window, capped at
 * `upTo` (inclusive) when given: a replay or purge covers the set as it stood when it began.
 */
export function failedScoreRange(filter: DeadLetterFilter, upTo?: number): { min: string; max: string } {
  const min = filter.since === undefined ? '-inf' : String(filter.since);
  if (upTo !== undefined && (filter.until === undefined || filter.until > upTo)) {
    return { min, max: String(upTo) };
  }
  return { min, max: filter.until === undefined ? '+inf' : `(${filter.until}` };
}

/** XRANGE bounds on the quarantine stream (ids start with the ms they were added) for the filter's window. */
export function streamIdRange(filter: DeadLetterFilter): { start: string; end: string } {
  return {
    start: filter.since === undefined ? '-' : `${filter.since}-0`,
    end: filter.until === undefined ? '+' : `(${filter.until}-0`,
  };
}
