import type {
  DeadLetterDetail,
  DeadLetterEntry,
  DestinationDeadLetters,
  QuarantineEntry,
} from '../../dlq/dead-letters.js';
import type { QuarantineDetail } from '../../dlq/quarantine.js';
import { html, path, query, type SafeHtml } from './html.js';
import { csrfField, dash, page, sum, type PageContext } from './layout.js';

/** A payload larger than this is shown cut, with its size: a browser tab is no place for 10 MB. */
const PAYLOAD_SHOWN_BYTES = 256 * 1024;

/** A dead-letter or quarantine filter as typed into the form (filter.ts parses it). */
export interface FilterForm {
  readonly destination?: string;
  readonly type?: string;
  readonly since?: string;
  readonly until?: string;
}

export function deadTable(entries: readonly DeadLetterEntry[], selectable: boolean): SafeHtml {
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
      >Since <input type="text" name="since" value="${form.since ?? ''}" placeholder="2h or an ISO time"
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
