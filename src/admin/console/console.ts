import type { IncomingMessage, ServerResponse } from 'node:http';
import type { BridgeConfig } from '../../config/schema.js';
import { listDestinationDeadLetters } from '../../dlq/dead-letters.js';
import type { Auditor } from '../../dlq/audit.js';
import { RedisUnavailableError, UsageError } from '../../errors.js';
import { LogThrottle } from '../../lifecycle/log-throttle.js';
import type { Logger } from '../../lifecycle/logger.js';
import type { BridgeMetrics } from '../metrics.js';
import type { AdminSource, ConsoleHandler } from '../server.js';
import { SCRIPT, STYLESHEET } from './assets.js';
import { AdminToken } from './auth.js';
import { CSRF_FIELD, csrfMatches } from './csrf.js';
import { DeadLetterRoutes } from './dead-letter-routes.js';
import { readForm, redirect, sendAsset, sendPage, sendText } from './http.js';
import { loginPage, messagePage, type PageContext } from './layout.js';
import { RateSampler } from './rates.js';
import { clearedCookie, sessionCookie, sessionIdOf, Sessions, type Session } from './session.js';
import { accountPage, destinationPage, overviewPage } from './status-pages.js';
import { statusView } from './status-view.js';

export interface ConsoleOptions {
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
export class OperatingConsole implements ConsoleHandler {
  private readonly token: AdminToken;
  private readonly sessions: Sessions;
  private readonly rates: RateSampler;
  private readonly deadLetters: DeadLetterRoutes;
  /** A guessing loop logs a line per address per few seconds, with the count, not one per try. */
  private readonly refusals = new LogThrottle();

  constructor(
    token: string,
    private readonly options: ConsoleOptions,
  ) {
    this.token = new AdminToken(token);
    this.sessions = new Sessions(options.config.server.sessionTimeout);
    this.rates = new RateSampler(options.metrics);
    this.deadLetters = new DeadLetterRoutes(options.config);
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
      const remote = req.socket.remoteAddress ?? 'unknown';
      this.refusals.log(remote, (repeats) =>
        this.options.logger.warn({ remote, ...repeats }, 'console login refused: wrong token'),
      );
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
      return this.deadLetters.list(res, context, url.searchParams);
    if (first === 'dead-letters' && rest.length === 2)
      return this.deadLetters.show(res, context, rest[0]!, rest[1]!);
    if (first === 'quarantine' && rest.length === 0)
      return this.deadLetters.quarantine(res, context, url.searchParams);
    if (first === 'quarantine' && rest.length === 1)
      return this.deadLetters.quarantineEntry(res, context, rest[0]!);
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
        return this.deadLetters.replay(res, form, this.auditor(caller), context);
      case '/dead-letters/purge':
        return this.deadLetters.purge(res, form, this.auditor(caller), context);
      case '/quarantine/replay':
        return this.deadLetters.replayQuarantine(res, form, this.auditor(caller), context);
      case '/quarantine/purge':
        return this.deadLetters.purgeQuarantine(res, form, this.auditor(caller), context);
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
export function createConsole(options: ConsoleOptions): OperatingConsole | undefined {
  const token = options.config.server.adminToken;
  return token === undefined ? undefined : new OperatingConsole(token, options);
}
