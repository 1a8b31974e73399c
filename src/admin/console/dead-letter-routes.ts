import type { ServerResponse } from 'node:http';
import type { BridgeConfig } from '../../config/schema.js';
import type { Auditor } from '../../dlq/audit.js';
import {
  listDestinationDeadLetters,
  purgeDeadLetters,
  readDeadLetter,
  replayDeadLetters,
  type SelectedJob,
} from '../../dlq/dead-letters.js';
import { parseFilter, type DeadLetterFilter } from '../../dlq/filter.js';
import {
  listQuarantine,
  purgeQuarantine,
  readQuarantineEntry,
  replayQuarantine,
} from '../../dlq/quarantine.js';
import { UsageError } from '../../errors.js';
import { destinationsOf } from '../../config/destinations.js';
import { query } from './html.js';
import { sendPage } from './http.js';
import {
  confirmPurgePage,
  deadLetterPage,
  deadLettersPage,
  quarantineEntryPage,
  quarantinePage,
  resultPage,
  type FilterForm,
} from './dead-letter-pages.js';
import { messagePage, type PageContext } from './layout.js';

/** Entries per page of dead letters and quarantine. */
const PAGE_SIZE = 50;

/**
 * The dead-letter and quarantine pages and actions, on the same functions as `dlq list|replay|purge`
 * (src/dlq), so the console and the CLI select, replay, purge and audit alike.
 */
export class DeadLetterRoutes {
  constructor(private readonly config: BridgeConfig) {}

  async list(res: ServerResponse, context: PageContext, params: URLSearchParams): Promise<void> {
    const form = filterForm(params);
    const offset = offsetOf(params);
    const destinations = destinationsOf(this.config).map((d) => d.id);
    const model = { form, destinations, offset, limit: PAGE_SIZE };
    let filter: DeadLetterFilter;
    try {
      filter = filterOf(form);
    } catch (err) {
      if (!(err instanceof UsageError)) throw err;
      return sendPage(res, 400, deadLettersPage(context, { ...model, sections: [], problem: err.message }));
    }
    const list = await listDestinationDeadLetters(this.config, {
      ...filter,
      offset,
      limit: PAGE_SIZE,
    });
    sendPage(res, 200, deadLettersPage(context, { ...model, sections: list.destinations }));
  }

  async show(res: ServerResponse, context: PageContext, destination: string, jobId: string): Promise<void> {
    const detail = await readDeadLetter(this.config, destination, jobId);
    if (!detail || detail.entries.length === 0) {
      return sendPage(
        res,
        404,
        messagePage(context, 'Not a dead letter', 'It was replayed or purged, or never existed.'),
      );
    }
    sendPage(res, 200, deadLetterPage(context, destination, jobId, detail));
  }

  async replay(
    res: ServerResponse,
    form: URLSearchParams,
    audit: Auditor,
    context: PageContext,
  ): Promise<void> {
    const filterInput = filterForm(form);
    const back = query('/dead-letters', { ...filterInput });
    if (form.get('scope') === 'matching') {
      const result = await replayDeadLetters(this.config, { ...filterOf(filterInput), audit });
      return sendPage(res, 200, resultPage(context, 'Replayed', replayLines(result), back));
    }
    const jobs = form
      .getAll('job')
      .map(selectedJob)
      .filter((j) => j !== undefined);
    if (jobs.length === 0) {
      return sendPage(res, 400, messagePage(context, 'Nothing selected', 'Tick the dead letters to replay.'));
    }
    const result = await replayDeadLetters(this.config, { jobs, audit });
    sendPage(res, 200, resultPage(context, 'Replayed', replayLines(result), back));
  }

  /** Without `confirm=yes`, a dry run and a confirmation page whose form pins `until` to now. */
  async purge(
    res: ServerResponse,
    form: URLSearchParams,
    audit: Auditor,
    context: PageContext,
  ): Promise<void> {
    const input = filterForm(form);
    const filter = filterOf(input);
    const back = query('/dead-letters', { ...input });
    if (form.get('confirm') !== 'yes') {
      const pinned = { ...input, until: pinnedUntil(filter) };
      const dry = await purgeDeadLetters(this.config, { ...filterOf(pinned), dryRun: true });
      const lines = dry.destinations
        .filter((d) => d.matched > 0)
        .map((d) => `${d.destination}: ${d.matched}`);
      return sendPage(
        res,
        200,
        confirmPurgePage(context, {
          action: '/dead-letters/purge',
          form: pinned,
          matched: dry.matched,
          what: 'dead letter(s)',
          back,
          lines,
        }),
      );
    }
    const result = await purgeDeadLetters(this.config, { ...filter, audit });
    const lines = [`removed ${result.removed} dead letter(s)`];
    if (result.failed) lines.push(`${result.failed} could not be removed`);
    if (result.kept) lines.push(`kept ${result.kept} batch job(s) that also hold other types`);
    sendPage(res, 200, resultPage(context, 'Purged', lines, back));
  }

  async quarantine(res: ServerResponse, context: PageContext, params: URLSearchParams): Promise<void> {
    const form = filterForm(params);
    const offset = offsetOf(params);
    const model = { form, offset, limit: PAGE_SIZE };
    let filter: DeadLetterFilter;
    try {
      filter = filterOf(form);
    } catch (err) {
      if (!(err instanceof UsageError)) throw err;
      return sendPage(
        res,
        400,
        quarantinePage(context, { ...model, total: 0, entries: [], problem: err.message }),
      );
    }
    const list = await listQuarantine(this.config, { ...filter, offset, limit: PAGE_SIZE });
    sendPage(res, 200, quarantinePage(context, { ...model, ...list }));
  }

  async quarantineEntry(res: ServerResponse, context: PageContext, streamId: string): Promise<void> {
    const detail = await readQuarantineEntry(this.config, streamId);
    if (!detail) {
      return sendPage(
        res,
        404,
        messagePage(context, 'Not in quarantine', 'It was replayed or purged, or never existed.'),
      );
    }
    sendPage(res, 200, quarantineEntryPage(context, detail));
  }

  async replayQuarantine(
    res: ServerResponse,
    form: URLSearchParams,
    audit: Auditor,
    context: PageContext,
  ): Promise<void> {
    const id = form.get('id') ?? undefined;
    const input = filterForm(form);
    const options = id !== undefined ? { id } : filterOf(input);
    const result = await replayQuarantine(this.config, { ...options, audit: audit });
    const lines = [`replayed ${result.replayed} quarantined payload(s)`];
    if (result.unrouted > 0)
      lines.push(`${result.unrouted} now decode but no destination wants them (removed)`);
    lines.push(`${result.stillFailing} still fail and stay in quarantine`);
    for (const [reason, n] of Object.entries(result.reasons)) lines.push(`${reason}: ${n}`);
    sendPage(res, 200, resultPage(context, 'Replayed', lines, query('/quarantine', { ...input })));
  }

  async purgeQuarantine(
    res: ServerResponse,
    form: URLSearchParams,
    audit: Auditor,
    context: PageContext,
  ): Promise<void> {
    const input = filterForm(form);
    const filter = filterOf(input);
    const back = query('/quarantine', { ...input });
    if (form.get('confirm') !== 'yes') {
      const pinned = { ...input, until: pinnedUntil(filter) };
      const dry = await purgeQuarantine(this.config, { ...filterOf(pinned), dryRun: true });
      return sendPage(
        res,
        200,
        confirmPurgePage(context, {
          action: '/quarantine/purge',
          form: pinned,
          matched: dry.matched,
          what: 'quarantined payload(s)',
          back,
          lines: [],
        }),
      );
    }
    const result = await purgeQuarantine(this.config, { ...filter, audit });
    sendPage(
      res,
      200,
      resultPage(context, 'Purged', [`removed ${result.removed} quarantined payload(s)`], back),
    );
  }

  /** The form's filter, parsed as `dlq` parses its flags; the destination must be configured. */
}

function filterOf(form: FilterForm): DeadLetterFilter {
  const types = form.type
    ?.split(',')
    .map((t) => t.trim())
    .filter((t) => t !== '');
  return parseFilter({ ...form, ...(types ? { types } : {}) });
}

function filterForm(params: URLSearchParams): FilterForm {
  const value = (name: string) => {
    const text = params.get(name)?.trim();
    return text ? text : undefined;
  };
  return {
    destination: value('destination'),
    type: value('type'),
    since: value('since'),
    until: value('until'),
  };
}

function offsetOf(params: URLSearchParams): number {
  const offset = Number(params.get('offset') ?? 0);
  return Number.isSafeInteger(offset) && offset > 0 ? offset : 0;
}

/** A checkbox value: `["destination","job id"]`. */
function selectedJob(value: string): SelectedJob | undefined {
  try {
    const parsed: unknown = JSON.parse(value);
    if (Array.isArray(parsed) && parsed.length === 2 && parsed.every((p) => typeof p === 'string')) {
      return { destination: parsed[0] as string, jobId: parsed[1] as string };
    }
  } catch {
    // Not one of the console's own values.
  }
  return undefined;
}

/** The confirmed purge removes only what was dead-lettered before the confirmation page was shown. */
function pinnedUntil(filter: DeadLetterFilter): string {
  const now = Date.now() + 1;
  return new Date(filter.until !== undefined && filter.until < now ? filter.until : now).toISOString();
}

function replayLines(result: {
  replayed: number;
  failed: number;
  destinations: readonly { destination: string; replayed: number; failed: number }[];
}): string[] {
  const lines = result.destinations
    .filter((d) => d.replayed > 0 || d.failed > 0)
    .map(
      (d) => `${d.destination}: replayed ${d.replayed}${d.failed ? `, could not replay ${d.failed}` : ''}`,
    );
  lines.push(
    `replayed ${result.replayed} dead letter(s)${result.failed ? `; ${result.failed} could not be replayed` : ''}`,
  );
  return lines;
}
