import type { DestinationDeadLetters } from '../../dlq/dead-letters.js';
import { deadTable } from './dead-letter-pages.js';
import { html, path, query, type SafeHtml } from './html.js';
import { dash, page, sum, type PageContext } from './layout.js';
import type { Rates } from './rates.js';
import type { AccountView, DestinationView, StatusView } from './status-view.js';

/** Seconds between reloads of the overview. */
const OVERVIEW_REFRESH_SECONDS = 5;

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
        ${card(status.redisTopology ? `redis (${status.redisTopology})` : 'redis', status.redis, 'redis')}
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
    { context, section: 'overview', refreshSeconds: OVERVIEW_REFRESH_SECONDS },
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
