import type { DeadLetterList, PurgeResult, ReplayResult } from './dead-letters.js';
import type { FilterDescription } from './filter.js';
import type { QuarantinePurgeResult, QuarantineReplayResult } from './quarantine.js';

/** `dlq list` output: a table per destination and one for quarantine, or the list as JSON with `json`. */
export function formatDeadLetters(list: DeadLetterList, options: { json: boolean }): string {
  if (options.json) return JSON.stringify(list, null, 2);
  const lines: string[] = [];
  const filter = filterLine(list.filter);
  if (filter) lines.push(filter);
  for (const w of list.destinations) {
    lines.push(
      `destination ${w.destination} (${w.type}): ${w.total} dead-lettered${shown(list.offset, w.entries.length, w.total)}`,
    );
    if (w.entries.length > 0) {
      lines.push(
        ...table(
          ['EVENT ID', 'TYPE', 'ACCOUNT', 'ATTEMPTS', 'LAST ERROR', 'FAILED AT', 'AGE'],
          w.entries.map((e) => [
            e.id,
            e.type,
            e.account,
            String(e.attempts),
            e.lastError,
            e.failedAt,
            humanAge(e.age),
          ]),
        ),
      );
    }
  }
  const q = list.quarantine;
  lines.push(
    `quarantine: ${q.total} payload(s) that could not be decoded${shown(list.offset, q.entries.length, q.total)}`,
  );
  if (q.entries.length > 0) {
    lines.push(
      ...table(
        ['STREAM ID', 'ACCOUNT', 'EVENT', 'REASON', 'SIZE', 'RECEIVED AT'],
        q.entries.map((e) => [e.streamId, e.account, e.event, e.reason, String(e.size), e.receivedAt]),
      ),
    );
  }
  return lines.join('\n');
}

/** `dlq replay` output. */
export function formatReplay(result: ReplayResult, options: { json: boolean }): string {
  if (options.json) return JSON.stringify(result, null, 2);
  const lines = result.destinations.map(
    (d) =>
      `destination ${d.destination} (${d.type}): replayed ${d.replayed}${d.failed ? `, could not replay ${d.failed}` : ''}`,
  );
  lines.push(
    `replayed ${result.replayed} dead letter(s)${result.failed ? `; ${result.failed} could not be replayed` : ''}`,
  );
  return lines.join('\n');
}

/** `dlq replay --quarantine` output. */
export function formatQuarantineReplay(result: QuarantineReplayResult, options: { json: boolean }): string {
  if (options.json) return JSON.stringify(result, null, 2);
  const lines = [`replayed ${result.replayed} quarantined payload(s)`];
  if (result.unrouted > 0) {
    lines.push(`${result.unrouted} now decode but no destination wants them (removed, as live)`);
  }
  lines.push(`${result.stillFailing} still fail and stay in quarantine`);
  for (const [reason, count] of Object.entries(result.reasons)) lines.push(`  ${reason}: ${count}`);
  return lines.join('\n');
}

/** `dlq purge` output; with `dryRun`, what it would remove. */
export function formatPurge(result: PurgeResult, options: { json: boolean }): string {
  if (options.json) return JSON.stringify(result, null, 2);
  const verb = result.dryRun ? 'would remove' : 'removed';
  const lines: string[] = [];
  const filter = filterLine(result.filter);
  if (filter) lines.push(filter);
  for (const d of result.destinations) {
    const count = result.dryRun ? d.matched : d.removed;
    const failed = d.failed ? `, could not remove ${d.failed}` : '';
    const kept = d.kept ? `; kept ${d.kept} batch job(s) that also hold other types` : '';
    lines.push(`destination ${d.destination} (${d.type}): ${verb} ${count}${failed}${kept}`);
  }
  const total = result.dryRun ? result.matched : result.removed;
  lines.push(
    `${verb} ${total} dead letter(s)${result.failed ? `; ${result.failed} could not be removed` : ''}`,
  );
  return lines.join('\n');
}

/** `dlq purge --quarantine` output. */
export function formatQuarantinePurge(result: QuarantinePurgeResult, options: { json: boolean }): string {
  if (options.json) return JSON.stringify(result, null, 2);
  const lines: string[] = [];
  const filter = filterLine(result.filter);
  if (filter) lines.push(filter);
  lines.push(
    result.dryRun
      ? `would remove ${result.matched} quarantined payload(s)`
      : `removed ${result.removed} quarantined payload(s)`,
  );
  return lines.join('\n');
}

/** The filter in words, or nothing when there is none (a destination alone shows in the sections). */
function filterLine(filter: FilterDescription): string | undefined {
  const parts: string[] = [];
  if (filter.types) parts.push(`type ${filter.types.map((t) => JSON.stringify(t)).join(' or ')}`);
  if (filter.since) parts.push(`dead-lettered at or after ${filter.since}`);
  if (filter.until) parts.push(`dead-lettered before ${filter.until}`);
  return parts.length > 0 ? `matching ${parts.join(', ')}` : undefined;
}

/** Which slice of a section is shown, and how to see the rest, when that is not all of it. */
function shown(offset: number, count: number, total: number): string {
  if (offset === 0 && count >= total) return '';
  if (count === 0) return ` (none after the newest ${offset})`;
  const rest = total - offset - count;
  const more = rest > 0 ? `; ${rest} more: --offset ${offset + count}` : '';
  return ` (showing ${offset + 1}-${offset + count}, newest first${more})`;
}

function table(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].map((l) => `  ${l}`);
}

function humanAge(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86_400)}d${Math.floor((s % 86_400) / 3600)}h`;
}
