import type { DeadLetterDetail, DeadLetterEntry, DestinationDeadLetters } from '../../dlq/dead-letters.js';
import type { QuarantineEntry } from '../../dlq/dead-letters.js';
import type { QuarantineDetail } from '../../dlq/quarantine.js';
import { html, path, query, type Html, type SafeHtml } from './html.js';
import type { Rates } from './rates.js';
import type { AccountView, DestinationView, StatusView } from './status-view.js';

/** Seconds between reloads of the overview. */
const OVERVIEW_REFRESH_SECONDS = 5;
/** A payload larger than this is shown cut, with its size: a browser tab is no place for 10 MB. */
const PAYLOAD_SHOWN_BYTES = 256 * 1024;

/** What every signed-in page needs: the session's CSRF token for its forms (absent with a bearer header). */
export interface PageContext {
  readonly csrf: string | undefined;
}

/** A dead-letter or quarantine filter as typed into the form (filter.ts parses it). */
export interface FilterForm {
  readonly destination?: string;
  readonly type?: string;
  readonly since?: string;
  readonly until?: string;
}

type Section = 'overview' | 'dead-letters' | 'quarantine';

export function page(
  title: string,
  body: Html,
  options: { context?: PageContext; section?: Section; refresh?: boolean } = {},
): SafeHtml {
  const nav = (href: string, label: string, section: Section) =>
    html`<a href="${href}" class="${options.section === section ? 'here' : ''}">${label}</a>`;
  const header = options.context
    ? html`<header>
        <span class="brand">imkit-bridge</span>
        <nav>
          ${nav('/', 'Overview', 'overview')} ${nav('/dead-letters', 'Dead letters', 'dead-letters')}
          ${nav('/quarantine', 'Quarantine', 'quarantine')}
        </nav>
        ${
          options.context.csrf !== undefined &&
          html`<form method="post" action="/logout">
            ${csrfField(options.context)}<button>Log out</button>
          </form>`
        }
      </header>`
    : html`<header><span class="brand">imkit-bridge</span></header>`;
  return html`<!doctype html>
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        ${options.refresh && html`<meta http-equiv="refresh" content="${OVERVIEW_REFRESH_SECONDS}" />`}
        <title>${title} · imkit-bridge</title>
        <link rel="stylesheet" href="/console.css" />
        <script src="/console.js" defer></script>
      </head>
      <body>
        ${header}
        <main>${body}</main>
      </body>
    </html> `;
}

function csrfField(context: PageContext): Html {
  return context.csrf === undefined
    ? undefined
    : html`<input type="hidden" name="csrf" value="${context.csrf}" />`;
}

export function loginPage(problem?: string): SafeHtml {
  return page(
    'Log in',
    html`<div class="login">
      <h1>Operating console</h1>
      ${problem && html`<div class="error" role="alert">${problem}</div>`}
      <form method="post" action="/login">
        <label
          >Admin token <input type="password" name="token" autocomplete="current-password" autofocus required
        /></label>
        <button class="primary" type="submit">Log in</button>
      </form>
      <p class="muted">The token is <code>server.adminToken</code> of this bridge's config.</p>
    </div>`,
  );
}

export function messagePage(context: PageContext | undefined, title: string, message: Html): SafeHtml {
  return page(
    title,
    html`<h1>${title}</h1>
      <p>${message}</p>
      <p><a href="/">Overview</a></p>`,
    { context },
  );
}

function dash(value: string | number | undefined): string {
  return value === undefined || value === '' ? '—' : String(value);
}

function perMinute(value: number | undefined): string {
  if (value === undefined) return '—';
  return value >= 10 ? value.toFixed(0) : value.toFixed(1);
}

function statePill(state: string): SafeHtml {
  const tone = state === 'live' || state === 'closed' ? 'ok' : state === 'open' ? 'bad' : 'warn';
  return html`<span class="pill ${tone}">${state}</span>`;
}

function card(label: string, value: string | number, id: string): SafeHtml {
  return html`<div class="card" data-stat="${id}">
    <div class="n">${value}</div>
    <div class="l">${label}</div>
  </div>`;
}

const sum = (values: readonly (number | undefined)[]) => values.reduce<number>((n, v) => n + (v ?? 0), 0);

export function overviewPage(context: PageContext, status: StatusView, rates: Rates): SafeHtml {
  const live = status.accounts.filter((a) => a.state === 'live').length;
  const errors = [
    ...status.accounts
      .filter((a) => a.lastError)
      .map((a) => ({ where: `account ${a.id}`, at: a.since ?? '', message: a.lastError! })),
    ...status.destinations
      .filter((d) => d.lastError)
      .map((d) => ({ where: `destination ${d.id}`, at: d.lastError!.at, message: d.lastError!.message })),
  ].sort((a, b) => b.at.localeCompare(a.at));
  return page(
    'Overview',
    html`<h1>Overview</h1>
      <div class="cards">
        ${card('accounts live', `${live} / ${status.accounts.length}`, 'accounts-live')}
        ${card('destinations', status.destinations.length, 'destinations')}
        ${card('waiting', sum(status.destinations.map((d) => d.waiting)), 'waiting')}
        ${card('delayed (retrying)', sum(status.destinations.map((d) => d.delayed)), 'delayed')}
        ${card('dead letters', sum(status.destinations.map((d) => d.dead)), 'dead')}
        ${card('redis', status.redis, 'redis')}
      </div>
      <p class="muted">
        ${status.role} process, version ${status.version}, up ${dash(status.uptimeSeconds)} s. Rates are per
        minute over the last ${rates.overSeconds} s. Reloads every ${OVERVIEW_REFRESH_SECONDS} s.
      </p>
      ${status.redisError && html`<div class="error">Redis: ${status.redisError}</div>`}
      <h2>Accounts</h2>
      ${accountsTable(status.accounts, rates)}
      <h2>Destinations</h2>
      ${destinationsTable(status.destinations, rates)}
      <h2>Recent errors</h2>
      ${
        errors.length === 0
          ? html`<p class="muted">None.</p>`
          : html`<table id="errors">
              <tr>
                <th>Where</th>
                <th>Since</th>
                <th>Error</th>
              </tr>
              ${errors.map(
                (e) =>
                  html`<tr>
                    <td>${e.where}</td>
                    <td class="mono">${dash(e.at)}</td>
                    <td>${e.message}</td>
                  </tr>`,
              )}
            </table>`
      }`,
    { context, section: 'overview', refresh: true },
  );
}

function accountsTable(accounts: readonly AccountView[], rates: Rates): SafeHtml {
  if (accounts.length === 0)
    return html`<p class="muted">No accounts in this process (a worker-only process).</p>`;
  return html`<table id="accounts">
    <tr>
      <th>Account</th>
      <th>State</th>
      <th>Since</th>
      <th>Last event</th>
      <th class="num">Reconnects</th>
      <th class="num">Events/min</th>
      <th>Last error</th>
    </tr>
    ${accounts.map(
      (a) =>
        html`<tr data-account="${a.id}">
          <td><a href="${path('/accounts', a.id)}">${a.id}</a></td>
          <td>${statePill(a.state)}</td>
          <td class="mono">${dash(a.since)}</td>
          <td class="mono">${dash(a.lastEventAt)}</td>
          <td class="num">${dash(a.reconnects)}</td>
          <td class="num">${perMinute(rates.received(a.id))}</td>
          <td>${dash(a.lastError)}</td>
        </tr>`,
    )}
  </table>`;
}

function destinationsTable(destinations: readonly DestinationView[], rates: Rates): SafeHtml {
  if (destinations.length === 0) return html`<p class="muted">No destinations configured.</p>`;
  return html`<table id="destinations">
    <tr>
      <th>Destination</th>
      <th>Type</th>
      <th>Breaker</th>
      <th class="num">Waiting</th>
      <th class="num">Active</th>
      <th class="num">Delayed</th>
      <th class="num">Dead</th>
      <th class="num">Delivered/min</th>
      <th class="num">Retries/min</th>
      <th class="num">Dead/min</th>
      <th>Last error</th>
    </tr>
    ${destinations.map((d) => {
      const rate = rates.delivery(d.id);
      return html`<tr data-destination="${d.id}">
        <td><a href="${path('/destinations', d.id)}">${d.id}</a></td>
        <td>${d.type}</td>
        <td>${d.breaker ? statePill(d.breaker) : '—'}</td>
        <td class="num" data-col="waiting">${dash(d.waiting)}</td>
        <td class="num" data-col="active">${dash(d.active)}</td>
        <td class="num" data-col="delayed">${dash(d.delayed)}</td>
        <td class="num" data-col="dead">
          <a href="${query('/dead-letters', { destination: d.id })}">${dash(d.dead)}</a>
        </td>
        <td class="num">${perMinute(rate?.delivered)}</td>
        <td class="num">${perMinute(rate?.retry)}</td>
        <td class="num">${perMinute(rate?.dead)}</td>
        <td>${dash(d.lastError?.message)}</td>
      </tr>`;
    })}
  </table>`;
}

export function accountPage(
  context: PageContext,
  account: AccountView,
  rates: Rates,
  receivedByType: ReadonlyMap<string, number>,
): SafeHtml {
  return page(
    `Account ${account.id}`,
    html`<h1>Account ${account.id}</h1>
      <dl>
        <dt>State</dt>
        <dd>${statePill(account.state)}</dd>
        <dt>Since</dt>
        <dd class="mono">${dash(account.since)}</dd>
        <dt>Last event</dt>
        <dd class="mono">${dash(account.lastEventAt)}</dd>
        <dt>Reconnects</dt>
        <dd>${dash(account.reconnects)}</dd>
        <dt>Events per minute</dt>
        <dd>${perMinute(rates.received(account.id))}</dd>
        <dt>Last error</dt>
        <dd>${dash(account.lastError)}</dd>
      </dl>
      <h2>Events received since this process started</h2>
      ${
        receivedByType.size === 0
          ? html`<p class="muted">None yet.</p>`
          : html`<table>
              <tr>
                <th>Type</th>
                <th class="num">Events</th>
              </tr>
              ${[...receivedByType].map(
                ([type, n]) =>
                  html`<tr>
                    <td>${type}</td>
                    <td class="num">${n}</td>
                  </tr>`,
              )}
            </table>`
      }`,
    { context, section: 'overview' },
  );
}

export function destinationPage(
  context: PageContext,
  destination: DestinationView,
  rates: Rates,
  dead: DestinationDeadLetters | undefined,
): SafeHtml {
  const rate = rates.delivery(destination.id);
  return page(
    `Destination ${destination.id}`,
    html`<h1>Destination ${destination.id}</h1>
      <dl>
        <dt>Type</dt>
        <dd>${destination.type}</dd>
        <dt>Target</dt>
        <dd class="mono">${dash(destination.target)}</dd>
        <dt>Breaker</dt>
        <dd>${destination.breaker ? statePill(destination.breaker) : '— (no worker in this process)'}</dd>
        <dt>Worker</dt>
        <dd>
          ${destination.running === undefined ? '—' : destination.running ? 'running' : 'stopped'},
          ${dash(destination.inFlight)} in flight
        </dd>
        <dt>Queue</dt>
        <dd>
          ${dash(destination.waiting)} waiting, ${dash(destination.active)} active,
          ${dash(destination.delayed)} delayed, ${dash(destination.dead)} dead
        </dd>
        <dt>Per minute</dt>
        <dd>
          ${perMinute(rate?.delivered)} delivered, ${perMinute(rate?.retry)} retries, ${perMinute(rate?.dead)}
          dead-lettered
        </dd>
        <dt>Last error</dt>
        <dd>
          ${destination.lastError ? html`${destination.lastError.message} <span class="muted">(${destination.lastError.at})</span>` : '—'}
        </dd>
      </dl>
      <h2>Newest dead letters</h2>
      ${
        dead && dead.entries.length > 0
          ? html`${deadTable(dead.entries, false)}
              <p>
                <a href="${query('/dead-letters', { destination: destination.id })}"
                  >All ${dead.total} dead letters of ${destination.id}</a
                >
              </p>`
          : html`<p class="muted">None.</p>`
      }`,
    { context, section: 'overview' },
  );
}

function deadTable(entries: readonly DeadLetterEntry[], selectable: boolean): SafeHtml {
  return html`<table class="dead-letters">
    <tr>
      ${selectable && html`<th><input type="checkbox" data-select-all aria-label="select all" /></th>`}
      <th>Event id</th>
      <th>Type</th>
      <th>Account</th>
      <th class="num">Attempts</th>
      <th>Last error</th>
      <th>Failed at</th>
    </tr>
    ${entries.map(
      (e) =>
        html`<tr data-event="${e.id}">
          ${
            selectable &&
            html`<td>
              <input
                type="checkbox"
                name="job"
                value="${JSON.stringify([e.destination, e.jobId])}"
                aria-label="select ${e.id}"
              />
            </td>`
          }
          <td class="mono"><a href="${path('/dead-letters', e.destination, e.jobId)}">${e.id}</a></td>
          <td>${e.type}</td>
          <td>${e.account}</td>
          <td class="num">${e.attempts}</td>
          <td>${e.lastError}</td>
          <td class="mono">${e.failedAt}</td>
        </tr>`,
    )}
  </table>`;
}

function filterFields(form: FilterForm, destinations: readonly string[] | undefined): SafeHtml {
  return html`${
      destinations &&
      html`<label
        >Destination
        <select name="destination">
          <option value="">all</option>
          ${destinations.map((d) => html`<option value="${d}" ${form.destination === d ? 'selected' : ''}>${d}</option>`)}
        </select></label
      >`
    }
    <label
      >Type <input type="text" name="type" value="${form.type ?? ''}" placeholder="chat message, typing"
    /></label>
    <label
      >Since
      <input type="text" name="since" value="${form.since ?? ''}" placeholder="2h or 2026-05-01T22:00Z"
    /></label>
    <label
      >Until <input type="text" name="until" value="${form.until ?? ''}" placeholder="30m or an ISO time"
    /></label>`;
}

function hiddenFilter(form: FilterForm): SafeHtml {
  return html`${(['destination', 'type', 'since', 'until'] as const).map(
    (name) => form[name] && html`<input type="hidden" name="${name}" value="${form[name]}" />`,
  )}`;
}

export interface DeadLettersModel {
  readonly form: FilterForm;
  readonly destinations: readonly string[];
  readonly sections: readonly DestinationDeadLetters[];
  readonly offset: number;
  readonly limit: number;
  readonly problem?: string;
}

export function deadLettersPage(context: PageContext, model: DeadLettersModel): SafeHtml {
  const { form, sections, offset, limit } = model;
  const total = sum(sections.map((s) => s.total));
  const more = sections.some((s) => s.total > offset + limit);
  return page(
    'Dead letters',
    html`<h1>Dead letters</h1>
      <form class="filter" method="get" action="/dead-letters">
        ${filterFields(form, model.destinations)}
        <button type="submit">Filter</button> <a href="/dead-letters">clear</a>
      </form>
      ${model.problem && html`<div class="error" role="alert">${model.problem}</div>`}
      <form method="post" action="/dead-letters/replay">
        ${csrfField(context)} ${hiddenFilter(form)}
        <p id="matching">
          ${total} dead letter(s) match${offset > 0 ? html`; skipping the newest ${offset}` : ''}.
        </p>
        <div class="actions">
          <button type="submit" name="scope" value="selected">Replay selected</button>
          <button type="submit" name="scope" value="matching" class="primary">
            Replay all ${total} matching
          </button>
          <button type="submit" formaction="/dead-letters/purge" class="danger">Purge all matching…</button>
        </div>
        ${sections.map(
          (s) =>
            html`<h2>${s.destination} <span class="muted">(${s.type}): ${s.total} matching</span></h2>
              ${s.entries.length > 0 ? deadTable(s.entries, true) : html`<p class="muted">None here.</p>`}`,
        )}
      </form>
      <p>
        ${offset > 0 && html`<a href="${query('/dead-letters', { ...form, offset: Math.max(0, offset - limit) })}">Newer</a>`}
        ${more && html`<a href="${query('/dead-letters', { ...form, offset: offset + limit })}">Older</a>`}
      </p>`,
    { context, section: 'dead-letters' },
  );
}

/** A request body as text to read: pretty JSON when it is JSON, cut when large. */
function payloadText(bytes: Buffer): { text: string; cut: boolean } {
  const cut = bytes.length > PAYLOAD_SHOWN_BYTES;
  const text = bytes.subarray(0, PAYLOAD_SHOWN_BYTES).toString('utf8');
  if (!cut) {
    try {
      return { text: JSON.stringify(JSON.parse(text), null, 2), cut };
    } catch {
      // Not JSON: shown as it is.
    }
  }
  return { text, cut };
}

function payloadBlock(bytes: Buffer): SafeHtml {
  const { text, cut } = payloadText(bytes);
  return html`${cut && html`<p class="muted">The first ${PAYLOAD_SHOWN_BYTES} of ${bytes.length} bytes.</p>`}
    <pre class="payload">${text}</pre>`;
}

export function deadLetterPage(
  context: PageContext,
  destination: string,
  jobId: string,
  detail: DeadLetterDetail,
): SafeHtml {
  const first = detail.entries[0]!;
  return page(
    `Dead letter ${first.id}`,
    html`<h1>Dead letter <span class="mono">${first.id}</span></h1>
      <dl>
        <dt>Destination</dt>
        <dd><a href="${path('/destinations', destination)}">${destination}</a></dd>
        <dt>Job</dt>
        <dd class="mono">${jobId}</dd>
        <dt>Failed at</dt>
        <dd class="mono">${first.failedAt}</dd>
        <dt>Attempts</dt>
        <dd>${first.attempts}</dd>
        <dt>Last error</dt>
        <dd id="last-error">${dash(first.lastError)}</dd>
      </dl>
      <form method="post" action="/dead-letters/replay" class="actions">
        ${csrfField(context)}
        <input type="hidden" name="job" value="${JSON.stringify([destination, jobId])}" />
        <button type="submit" name="scope" value="selected" class="primary">Replay</button>
      </form>
      ${detail.entries.map(
        (e) =>
          html`<h2>${e.type} <span class="muted">from ${e.account}, event ${e.id}</span></h2>
            ${payloadBlock(Buffer.from(detail.bodies[e.id] ?? '', 'utf8'))}`,
      )}`,
    { context, section: 'dead-letters' },
  );
}

export function confirmPurgePage(
  context: PageContext,
  options: {
    action: string;
    form: FilterForm;
    matched: number;
    what: string;
    back: string;
    lines: readonly string[];
  },
): SafeHtml {
  return page(
    'Confirm purge',
    html`<h1>Purge ${options.matched} ${options.what}?</h1>
      <p>
        They are removed for good; this cannot be undone. Only entries that match now are removed, none that
        arrive after this page was shown.
      </p>
      ${
        options.lines.length > 0 &&
        html`<ul>
          ${options.lines.map((l) => html`<li>${l}</li>`)}
        </ul>`
      }
      <form method="post" action="${options.action}" class="actions">
        ${csrfField(context)} ${hiddenFilter(options.form)}
        <input type="hidden" name="confirm" value="yes" />
        <button type="submit" class="danger">Purge ${options.matched}</button>
        <a href="${options.back}">Cancel</a>
      </form>`,
    { context },
  );
}

export function resultPage(
  context: PageContext,
  title: string,
  lines: readonly string[],
  back: string,
): SafeHtml {
  return page(
    title,
    html`<h1>${title}</h1>
      <div class="notice" role="status" id="result">${lines.map((l) => html`<div>${l}</div>`)}</div>
      <p><a href="${back}">Back</a></p>`,
    { context },
  );
}

export interface QuarantineModel {
  readonly form: FilterForm;
  readonly total: number;
  readonly entries: readonly QuarantineEntry[];
  readonly offset: number;
  readonly limit: number;
  readonly problem?: string;
}

export function quarantinePage(context: PageContext, model: QuarantineModel): SafeHtml {
  const { form, offset, limit } = model;
  return page(
    'Quarantine',
    html`<h1>Quarantine</h1>
      <p class="muted">
        Payloads that could not be decoded. Replay decodes them again with the current config.
      </p>
      <form class="filter" method="get" action="/quarantine">
        ${filterFields(form, undefined)}
        <button type="submit">Filter</button> <a href="/quarantine">clear</a>
      </form>
      ${model.problem && html`<div class="error" role="alert">${model.problem}</div>`}
      <form method="post" action="/quarantine/replay" class="actions">
        ${csrfField(context)} ${hiddenFilter(form)}
        <span id="matching">${model.total} payload(s) match.</span>
        <button type="submit" class="primary">Replay all matching</button>
        <button type="submit" formaction="/quarantine/purge" class="danger">Purge all matching…</button>
      </form>
      ${
        model.entries.length === 0
          ? html`<p class="muted">None.</p>`
          : html`<table id="quarantine">
              <tr>
                <th>Stream id</th>
                <th>Account</th>
                <th>Event</th>
                <th>Reason</th>
                <th class="num">Bytes</th>
                <th>Received at</th>
              </tr>
              ${model.entries.map(
                (e) =>
                  html`<tr>
                    <td class="mono"><a href="${path('/quarantine', e.streamId)}">${e.streamId}</a></td>
                    <td>${e.account}</td>
                    <td>${e.event}</td>
                    <td>${e.reason}</td>
                    <td class="num">${e.size}</td>
                    <td class="mono">${e.receivedAt}</td>
                  </tr>`,
              )}
            </table>`
      }
      <p>
        ${offset > 0 && html`<a href="${query('/quarantine', { ...form, offset: Math.max(0, offset - limit) })}">Newer</a>`}
        ${model.total > offset + limit && html`<a href="${query('/quarantine', { ...form, offset: offset + limit })}">Older</a>`}
      </p>`,
    { context, section: 'quarantine' },
  );
}

export function quarantineEntryPage(context: PageContext, detail: QuarantineDetail): SafeHtml {
  const e = detail.entry;
  return page(
    `Quarantined ${e.streamId}`,
    html`<h1>Quarantined payload <span class="mono">${e.streamId}</span></h1>
      <dl>
        <dt>Account</dt>
        <dd>${e.account}</dd>
        <dt>Event</dt>
        <dd>${e.event}</dd>
        <dt>Reason</dt>
        <dd>${e.reason}</dd>
        <dt>Received at</dt>
        <dd class="mono">${e.receivedAt}</dd>
        <dt>Size</dt>
        <dd>${e.size} bytes, stored as ${dash(detail.rawType)}</dd>
        <dt>SHA-256</dt>
        <dd class="mono">${dash(e.sha256)}</dd>
        <dt>Ids</dt>
        <dd class="mono">${JSON.stringify(e.ids)}</dd>
      </dl>
      <form method="post" action="/quarantine/replay" class="actions">
        ${csrfField(context)}
        <input type="hidden" name="id" value="${e.streamId}" />
        <button type="submit" class="primary">Replay</button>
      </form>
      <h2>
        Raw payload ${detail.rawType === 'binary' && html`<span class="muted">(binary, as base64)</span>`}
      </h2>
      ${
        detail.rawType === 'binary'
          ? html`${
                detail.raw.length > PAYLOAD_SHOWN_BYTES &&
                html`<p class="muted">The first ${PAYLOAD_SHOWN_BYTES} of ${detail.raw.length} bytes.</p>`
              }
              <pre class="payload">${detail.raw.subarray(0, PAYLOAD_SHOWN_BYTES).toString('base64')}</pre>`
          : payloadBlock(detail.raw)
      }`,
    { context, section: 'quarantine' },
  );
}
