import type { IncomingMessage, ServerResponse } from 'node:http';
import { destinationsOf } from '../../config/destinations.js';
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
import { RedisUnavailableError, UsageError } from '../../errors.js';
import type { Logger } from '../../lifecycle/logger.js';
import type { BridgeMetrics } from '../metrics.js';
import type { AdminSource, ConsoleHandler } from '../server.js';
import { SCRIPT, STYLESHEET } from './assets.js';
import { AdminToken } from './auth.js';
import { CSRF_FIELD, csrfMatches } from './csrf.js';
import { query } from './html.js';
import { readForm, redirect, sendAsset, sendPage, sendText } from './http.js';
import {
  accountPage,
  confirmPurgePage,
  deadLetterPage,
  deadLettersPage,
  destinationPage,
  loginPage,
  messagePage,
  overviewPage,
  quarantineEntryPage,
  quarantinePage,
  resultPage,
  type FilterForm,
  type PageContext,
} from './pages.js';
import { RateSampler } from './rates.js';
import { clearedCookie, sessionCookie, sessionIdOf, Sessions, type Session } from './session.js';
import { statusView } from './status-view.js';

/** Entries per page of dead letters and quarantine. */
const PAGE_SIZE = 50;

export interface ConsoleOptions {
  readonly token: string;
  readonly sessionTimeout: number;
  readonly config: BridgeConfig;
  readonly source: AdminSource;
  readonly metrics: BridgeMetrics;
  readonly logger: Logger;
}

/** Who is asking: a logged-in browser, or a client sending the token as a bearer header. */
type Caller =
  | { readonly session: Session; readonly remote: string }
  | { readonly session?: undefined; readonly remote: string };

/**
 * The operating console (docs/operations.md, "Console"): server-rendered pages over what `/status`
 * reports and the same dead-letter code as `dlq list|replay|purge`. Every page needs the admin token,
 * as a bearer header or through a session from the login form; every POST from a session needs the
 * session's CSRF token. A bearer header is never sent by a browser on its own, so it needs none.
 */
export class Console implements ConsoleHandler {
  private readonly token: AdminToken;
  private readonly sessions: Sessions;
  private readonly rates: RateSampler;

  constructor(private readonly options: ConsoleOptions) {
    this.token = new AdminToken(options.token);
    this.sessions = new Sessions(options.sessionTimeout);
    this.rates = new RateSampler(options.metrics);
  }

  close(): void {
    this.rates.close();
  }

  async handle(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const method = req.method === 'HEAD' ? 'GET' : req.method;
    const route = `${method} ${url.pathname}`;
    if (route === 'GET /console.css') return sendAsset(res, 'text/css', STYLESHEET);
    if (route === 'GET /console.js') return sendAsset(res, 'text/javascript', SCRIPT);
    if (route === 'GET /login') return sendPage(res, 200, loginPage());
    if (route === 'POST /login') return this.login(req, res);
    if (method !== 'GET' && method !== 'POST') return sendText(res, 405, 'method not allowed\n');

    const caller = this.caller(req);
    if (!caller) {
      if (method === 'GET') return redirect(res, '/login');
      return sendText(res, 401, 'unauthorized: log in, or send Authorization: Bearer <server.adminToken>\n', {
        'www-authenticate': 'Bearer realm="imkit-bridge"',
      });
    }
    const context: PageContext = { csrf: caller.session?.csrf };
    try {
      if (method === 'GET') await this.get(res, url, context);
      else {
        const form = await readForm(req);
        if (!form)
          return sendText(
            res,
            415,
            'expected a form (application/x-www-form-urlencoded) of at most 256 KiB\n',
          );
        if (caller.session && !csrfMatches(caller.session, form.get(CSRF_FIELD) ?? undefined)) {
          return sendText(
            res,
            403,
            'forbidden: missing or wrong CSRF token; reload the page and try again\n',
          );
        }
        await this.post(res, url.pathname, form, caller, context);
      }
    } catch (err) {
      if (err instanceof UsageError)
        return sendPage(res, 400, messagePage(context, 'Cannot do that', err.message));
      if (err instanceof RedisUnavailableError) {
        return sendPage(res, 503, messagePage(context, 'Redis unavailable', err.message));
      }
      throw err;
    }
  }

  private async login(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const form = await readForm(req);
    const candidate = form?.get('token') ?? '';
    if (!this.token.matches(candidate)) {
      this.options.logger.warn({ remote: req.socket.remoteAddress }, 'console login refused: wrong token');
      return sendPage(res, 401, loginPage('That is not the admin token.'));
    }
    const session = this.sessions.create(req.socket.remoteAddress ?? 'unknown');
    this.options.logger.info({ session: session.tag, remote: session.remote }, 'console login');
    redirect(res, '/', { 'set-cookie': sessionCookie(session, this.sessions.ttlSeconds) });
  }

  private caller(req: IncomingMessage): Caller | undefined {
    const remote = req.socket.remoteAddress ?? 'unknown';
    if (req.headers.authorization !== undefined) return this.token.bearerOf(req) ? { remote } : undefined;
    const session = this.sessions.get(sessionIdOf(req.headers.cookie));
    return session && { session, remote };
  }

  /** Audit lines name the session by its tag (never its cookie) or the bearer caller, and the address. */
  private auditor(caller: Caller): Auditor {
    const who = caller.session
      ? `console session ${caller.session.tag} from ${caller.remote}`
      : `console bearer from ${caller.remote}`;
    return { who, logger: this.options.logger };
  }

  private async get(res: ServerResponse, url: URL, context: PageContext): Promise<void> {
    const [, first = '', ...rest] = url.pathname.split('/').map(decodeSegment);
    if (first === '' && rest.length === 0) {
      const status = statusView(await this.options.source.status());
      return sendPage(res, 200, overviewPage(context, status, await this.rates.rates()));
    }
    if (first === 'accounts' && rest.length === 1) return this.account(res, context, rest[0]!);
    if (first === 'destinations' && rest.length === 1) return this.destination(res, context, rest[0]!);
    if (first === 'dead-letters' && rest.length === 0)
      return this.deadLetters(res, context, url.searchParams);
    if (first === 'dead-letters' && rest.length === 2)
      return this.deadLetter(res, context, rest[0]!, rest[1]!);
    if (first === 'quarantine' && rest.length === 0) return this.quarantine(res, context, url.searchParams);
    if (first === 'quarantine' && rest.length === 1) return this.quarantineEntry(res, context, rest[0]!);
    notFound(res, context);
  }

  private async post(
    res: ServerResponse,
    pathname: string,
    form: URLSearchParams,
    caller: Caller,
    context: PageContext,
  ): Promise<void> {
    switch (pathname) {
      case '/logout':
        if (caller.session) this.sessions.end(caller.session.id);
        return redirect(res, '/login', { 'set-cookie': clearedCookie() });
      case '/dead-letters/replay':
        return this.replay(res, form, caller, context);
      case '/dead-letters/purge':
        return this.purge(res, form, caller, context);
      case '/quarantine/replay':
        return this.replayQuarantine(res, form, caller, context);
      case '/quarantine/purge':
        return this.purgeQuarantine(res, form, caller, context);
      default:
        notFound(res, context);
    }
  }

  private async account(res: ServerResponse, context: PageContext, id: string): Promise<void> {
    const account = statusView(await this.options.source.status()).accounts.find((a) => a.id === id);
    if (!account) return notFound(res, context);
    const received = new Map<string, number>();
    for (const { labels, value } of (await this.options.metrics.eventsReceived.get()).values) {
      if (labels.account === id) received.set(String(labels.type), value);
    }
    sendPage(res, 200, accountPage(context, account, await this.rates.rates(), received));
  }

  private async destination(res: ServerResponse, context: PageContext, id: string): Promise<void> {
    const destination = statusView(await this.options.source.status()).destinations.find((d) => d.id === id);
    if (!destination) return notFound(res, context);
    const dead = await listDestinationDeadLetters(this.options.config, { destination: id, limit: 10 }).catch(
      (err: unknown) => {
        this.options.logger.warn({ err, destination: id }, 'console: cannot read dead letters');
        return undefined;
      },
    );
    sendPage(
      res,
      200,
      destinationPage(context, destination, await this.rates.rates(), dead?.destinations[0]),
    );
  }

  private async deadLetters(
    res: ServerResponse,
    context: PageContext,
    params: URLSearchParams,
  ): Promise<void> {
    const form = filterForm(params);
    const offset = offsetOf(params);
    const destinations = destinationsOf(this.options.config).map((d) => d.id);
    const model = { form, destinations, offset, limit: PAGE_SIZE };
    let filter: DeadLetterFilter;
    try {
      filter = this.filterOf(form);
    } catch (err) {
      if (!(err instanceof UsageError)) throw err;
      return sendPage(res, 400, deadLettersPage(context, { ...model, sections: [], problem: err.message }));
    }
    const list = await listDestinationDeadLetters(this.options.config, {
      ...filter,
      offset,
      limit: PAGE_SIZE,
    });
    sendPage(res, 200, deadLettersPage(context, { ...model, sections: list.destinations }));
  }

  private async deadLetter(
    res: ServerResponse,
    context: PageContext,
    destination: string,
    jobId: string,
  ): Promise<void> {
    const detail = await readDeadLetter(this.options.config, destination, jobId);
    if (!detail || detail.entries.length === 0) {
      return sendPage(
        res,
        404,
        messagePage(context, 'Not a dead letter', 'It was replayed or purged, or never existed.'),
      );
    }
    sendPage(res, 200, deadLetterPage(context, destination, jobId, detail));
  }

  private async replay(
    res: ServerResponse,
    form: URLSearchParams,
    caller: Caller,
    context: PageContext,
  ): Promise<void> {
    const filterInput = filterForm(form);
    const audit = this.auditor(caller);
    const back = query('/dead-letters', { ...filterInput });
    if (form.get('scope') === 'matching') {
      const result = await replayDeadLetters(this.options.config, { ...this.filterOf(filterInput), audit });
      return sendPage(res, 200, resultPage(context, 'Replayed', replayLines(result), back));
    }
    const jobs = form
      .getAll('job')
      .map(selectedJob)
      .filter((j) => j !== undefined);
    if (jobs.length === 0) {
      return sendPage(res, 400, messagePage(context, 'Nothing selected', 'Tick the dead letters to replay.'));
    }
    const result = await replayDeadLetters(this.options.config, { jobs, audit });
    sendPage(res, 200, resultPage(context, 'Replayed', replayLines(result), back));
  }

  /** Without `confirm=yes`, a dry run and a confirmation page whose form pins `until` to now. */
  private async purge(
    res: ServerResponse,
    form: URLSearchParams,
    caller: Caller,
    context: PageContext,
  ): Promise<void> {
    const input = filterForm(form);
    const filter = this.filterOf(input);
    const back = query('/dead-letters', { ...input });
    if (form.get('confirm') !== 'yes') {
      const dry = await purgeDeadLetters(this.options.config, { ...filter, dryRun: true });
      const pinned = { ...input, until: pinnedUntil(filter) };
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
    const result = await purgeDeadLetters(this.options.config, { ...filter, audit: this.auditor(caller) });
    const lines = [`removed ${result.removed} dead letter(s)`];
    if (result.failed) lines.push(`${result.failed} could not be removed`);
    if (result.kept) lines.push(`kept ${result.kept} batch job(s) that also hold other types`);
    sendPage(res, 200, resultPage(context, 'Purged', lines, back));
  }

  private async quarantine(
    res: ServerResponse,
    context: PageContext,
    params: URLSearchParams,
  ): Promise<void> {
    const form = filterForm(params);
    const offset = offsetOf(params);
    const model = { form, offset, limit: PAGE_SIZE };
    let filter: DeadLetterFilter;
    try {
      filter = this.filterOf(form);
    } catch (err) {
      if (!(err instanceof UsageError)) throw err;
      return sendPage(
        res,
        400,
        quarantinePage(context, { ...model, total: 0, entries: [], problem: err.message }),
      );
    }
    const list = await listQuarantine(this.options.config, { ...filter, offset, limit: PAGE_SIZE });
    sendPage(res, 200, quarantinePage(context, { ...model, ...list }));
  }

  private async quarantineEntry(res: ServerResponse, context: PageContext, streamId: string): Promise<void> {
    const detail = await readQuarantineEntry(this.options.config, streamId);
    if (!detail) {
      return sendPage(
        res,
        404,
        messagePage(context, 'Not in quarantine', 'It was replayed or purged, or never existed.'),
      );
    }
    sendPage(res, 200, quarantineEntryPage(context, detail));
  }

  private async replayQuarantine(
    res: ServerResponse,
    form: URLSearchParams,
    caller: Caller,
    context: PageContext,
  ): Promise<void> {
    const id = form.get('id') ?? undefined;
    const input = filterForm(form);
    const options = id !== undefined ? { id } : this.filterOf(input);
    const result = await replayQuarantine(this.options.config, { ...options, audit: this.auditor(caller) });
    const lines = [`replayed ${result.replayed} quarantined payload(s)`];
    if (result.unrouted > 0)
      lines.push(`${result.unrouted} now decode but no destination wants them (removed)`);
    lines.push(`${result.stillFailing} still fail and stay in quarantine`);
    for (const [reason, n] of Object.entries(result.reasons)) lines.push(`${reason}: ${n}`);
    sendPage(res, 200, resultPage(context, 'Replayed', lines, query('/quarantine', { ...input })));
  }

  private async purgeQuarantine(
    res: ServerResponse,
    form: URLSearchParams,
    caller: Caller,
    context: PageContext,
  ): Promise<void> {
    const input = filterForm(form);
    const filter = this.filterOf(input);
    const back = query('/quarantine', { ...input });
    if (form.get('confirm') !== 'yes') {
      const dry = await purgeQuarantine(this.options.config, { ...filter, dryRun: true });
      return sendPage(
        res,
        200,
        confirmPurgePage(context, {
          action: '/quarantine/purge',
          form: { ...input, until: pinnedUntil(filter) },
          matched: dry.matched,
          what: 'quarantined payload(s)',
          back,
          lines: [],
        }),
      );
    }
    const result = await purgeQuarantine(this.options.config, { ...filter, audit: this.auditor(caller) });
    sendPage(
      res,
      200,
      resultPage(context, 'Purged', [`removed ${result.removed} quarantined payload(s)`], back),
    );
  }

  /** The form's filter, parsed as `dlq` parses its flags; the destination must be configured. */
  private filterOf(form: FilterForm): DeadLetterFilter {
    const types = form.type
      ?.split(',')
      .map((t) => t.trim())
      .filter((t) => t !== '');
    return parseFilter({ ...form, ...(types ? { types } : {}) });
  }
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

function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

function notFound(res: ServerResponse, context: PageContext): void {
  sendPage(res, 404, messagePage(context, 'Not found', 'No such page.'));
}

/** The console when `server.adminToken` is set, else nothing (the admin server says how to enable it). */
export function createConsole(
  options: Omit<ConsoleOptions, 'token'> & { token: string | undefined },
): Console | undefined {
  return options.token === undefined ? undefined : new Console({ ...options, token: options.token });
}
