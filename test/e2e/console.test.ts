import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { BridgeProcess, writeConfig } from '../support/bridge-process.js';
import { Browser } from '../support/browser.js';
import { waitFor } from '../support/redis.js';
import { BOT, SECRET, World } from './world.js';

const ADMIN_TOKEN = 'console-admin-token-3b9f0c6d1e';
/** Bodies holding this are refused for good (410) while `failing` is on: they become dead letters. */
const FAIL = 'FAILME';
const XSS_TEXT = `<script>window.__xss = 1; alert('xss')</script> <a href="javascript:alert(1)">javascript:alert(1)</a> ${FAIL}`;
const QUARANTINED_TEXT = '%%% not base64 <script>alert("q")</script> %%%';
/** With CONSOLE_SCREENSHOTS=<dir> (npm run screenshots), each page is saved there as a PNG. */
const SCREENSHOTS = process.env.CONSOLE_SCREENSHOTS && resolve(process.env.CONSOLE_SCREENSHOTS);

interface Status {
  accounts: { id: string; state: string }[];
  destinations: { id: string; waiting: number; delayed: number; dead: number }[];
  redis: { state: string; topology: string };
}

describe('operating console in a real browser', () => {
  let world: World;
  let bridge: BridgeProcess;
  let browser: Browser;
  let page: Page;
  let base: string;
  let failing = true;
  const dialogs: string[] = [];
  /** When the first dead letters had settled: the filter's `since` that leaves them out. */
  let afterEarly: string;

  async function status(): Promise<Status> {
    const res = await fetch(`${base}/status`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(res.status).toBe(200);
    return (await res.json()) as Status;
  }

  async function dead(destination: string): Promise<number> {
    return (await status()).destinations.find((d) => d.id === destination)!.dead;
  }

  async function waitDead(destination: string, n: number): Promise<void> {
    await waitFor(async () => (await dead(destination)) === n, {
      timeoutMs: 20_000,
      what: `${n} dead letter(s) at ${destination}`,
    });
  }

  /** The id of the event whose webhook request to `path` contains `text`. */
  function eventIdOf(path: string, text: string): string {
    const request = world.receiver.requests.find((r) => r.url === `/hook/${path}` && r.body.includes(text));
    return String(request!.headers['webhook-id']);
  }

  async function shot(name: string): Promise<void> {
    if (!SCREENSHOTS) return;
    mkdirSync(SCREENSHOTS, { recursive: true });
    await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: true });
  }

  beforeAll(async () => {
    world = await World.start();
    world.receiver.respondWith((req) => ({ status: failing && req.body.includes(FAIL) ? 410 : 204 }));
    const hook = (id: string) => ({
      id,
      url: `${world.receiver.url}/${id}`,
      secret: SECRET,
      timeout: '2s',
      retry: { schedule: ['200ms'] },
    });
    const config = world.config({
      top: {
        server: { host: '127.0.0.1', port: 0, adminToken: '${env:ADMIN_TOKEN}' },
        webhooks: [hook('audit'), hook('archive')],
      },
    });
    bridge = await BridgeProcess.start(writeConfig(config), {
      env: { BOT_TOKEN: world.token, ADMIN_TOKEN },
    });
    world.bridges.push(bridge);
    base = `http://127.0.0.1:${bridge.adminPort}`;
    await world.connected();
    browser = await Browser.launch();
    page = await browser.context.newPage();
    page.on('dialog', (dialog) => {
      dialogs.push(dialog.message());
      void dialog.dismiss();
    });

    // An early dead letter at both destinations, left out by the time filter below.
    world.sim.sendMessage('r1', `early ${FAIL}`, { members: [BOT, 'alice'], sender: 'alice' });
    await waitDead('audit', 1);
    await waitDead('archive', 1);
    afterEarly = new Date().toISOString();
    // Then a chat message that tries to run script, and a typing event; both refused for good.
    world.sim.sendMessage('r1', XSS_TEXT, { members: [BOT, 'alice'], sender: 'alice' });
    world.sim.emit(BOT, 'typing', { room: `${FAIL}-room`, message: 'typing' });
    // Some traffic that goes through, for the rates, and a payload that cannot be decoded.
    for (let i = 0; i < 5; i++)
      world.sim.sendMessage('r2', `hello ${i}`, { members: [BOT, 'bob'], sender: 'bob' });
    world.sim.emitRaw(BOT, 'chat message', QUARANTINED_TEXT);
    await waitDead('audit', 3);
    await waitDead('archive', 3);
    await world.waitDelivered(5, 'chat message');
  });

  afterAll(async () => {
    await browser?.close();
    await world?.close();
  });

  test('without the token: pages redirect to the login form, POSTs get 401, /status 401; healthz stays open', async () => {
    const page = await fetch(`${base}/dead-letters`, { redirect: 'manual' });
    expect(page.status).toBe(303);
    expect(page.headers.get('location')).toBe('/login');
    const post = await fetch(`${base}/dead-letters/purge`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'confirm=yes',
      redirect: 'manual',
    });
    expect(post.status).toBe(401);
    expect((await fetch(`${base}/status`)).status).toBe(401);
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    const wrongBearer = await fetch(`${base}/`, {
      headers: { authorization: 'Bearer not-the-admin-token' },
      redirect: 'manual',
    });
    expect(wrongBearer.status).toBe(303);
    // The right bearer token opens every page, with the strict headers.
    const bearer = await fetch(`${base}/dead-letters`, {
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    });
    expect(bearer.status).toBe(200);
    expect(bearer.headers.get('content-security-policy')).toBe(
      "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    expect(bearer.headers.get('x-content-type-options')).toBe('nosniff');
    expect(bearer.headers.get('referrer-policy')).toBe('no-referrer');
    expect(bearer.headers.get('cache-control')).toBe('no-store');
  });

  test('login: a wrong token is refused, the right one opens the overview with an HttpOnly SameSite=Strict session', async () => {
    await page.goto(`${base}/`);
    expect(new URL(page.url()).pathname).toBe('/login');
    await shot('login');
    await page.fill('input[name=token]', 'wrong-token-wrong-token');
    const refused = page.waitForResponse(
      (r) => r.url() === `${base}/login` && r.request().method() === 'POST',
    );
    await page.click('button[type=submit]');
    expect((await refused).status()).toBe(401);
    await expect.poll(() => page.locator('[role=alert]').textContent()).toContain('not the admin token');
    expect(await browser.context.cookies()).toEqual([]);

    await page.fill('input[name=token]', ADMIN_TOKEN);
    await page.click('button[type=submit]');
    await page.waitForURL(`${base}/`);
    const [cookie] = await browser.context.cookies();
    expect(cookie).toMatchObject({ name: 'imkit_console', httpOnly: true, sameSite: 'Strict', path: '/' });
    expect(cookie!.value).not.toContain(ADMIN_TOKEN);
    expect(await page.locator('h1').innerText()).toBe('Overview');
  });

  test('the overview shows the numbers /status reports; no page shows a secret', async () => {
    const expected = await status();
    await page.goto(`${base}/`);
    const cell = (destination: string, column: string) =>
      page.locator(`tr[data-destination="${destination}"] td[data-col="${column}"]`).innerText();
    for (const d of expected.destinations) {
      expect(await cell(d.id, 'dead')).toBe(String(d.dead));
      expect(await cell(d.id, 'waiting')).toBe(String(d.waiting));
      expect(await cell(d.id, 'delayed')).toBe(String(d.delayed));
    }
    const totalDead = expected.destinations.reduce((n, d) => n + d.dead, 0);
    expect(totalDead).toBe(6);
    expect(await page.locator('[data-stat="dead"] .n').innerText()).toBe(String(totalDead));
    const live = expected.accounts.filter((a) => a.state === 'live').length;
    expect(await page.locator('[data-stat="accounts-live"] .n').innerText()).toBe(`${live} / 1`);
    expect(await page.locator('[data-stat="redis"] .n').innerText()).toBe(expected.redis.state);
    expect(await page.locator('[data-stat="redis"] .l').textContent()).toContain(expected.redis.topology);
    expect(await page.locator(`tr[data-account="${BOT}"] .pill`).innerText()).toBe(
      expected.accounts[0]!.state,
    );
    await shot('overview');

    await page.click(`tr[data-account="${BOT}"] a`);
    expect(await page.locator('h1').innerText()).toBe(`Account ${BOT}`);
    await shot('account');
    await page.goto(`${base}/`);
    await page.click('tr[data-destination="audit"] td:first-child a');
    expect(await page.locator('h1').innerText()).toBe('Destination audit');
    expect(await page.locator('table.dead-letters tr[data-event]').count()).toBe(3);
    await shot('destination');
    // No secret on any of these pages: signing secret, account token, admin token.
    for (const path of ['/', `/accounts/${BOT}`, '/destinations/audit', '/destinations/archive']) {
      await page.goto(`${base}${path}`);
      const content = await page.content();
      for (const secret of [SECRET, world.token, ADMIN_TOKEN]) expect(content, path).not.toContain(secret);
    }
  });

  test('a dead letter found by destination, type and time shows its payload as text, and its replay is delivered', async () => {
    const xssId = eventIdOf('audit', 'window.__xss');
    await page.goto(`${base}/dead-letters`);
    await page.selectOption('select[name=destination]', 'audit');
    await page.fill('input[name=type]', 'chat message');
    await page.fill('input[name=since]', afterEarly);
    await page.click('form.filter button[type=submit]');
    await page.waitForURL(/\/dead-letters\?/);
    const rows = page.locator('table.dead-letters tr[data-event]');
    expect(await rows.count()).toBe(1);
    expect(await rows.first().getAttribute('data-event')).toBe(xssId);
    expect(await page.locator('#matching').textContent()).toContain('1 dead letter(s) match');
    await shot('dead-letters');

    await rows.first().locator('a').click();
    await page.waitForURL(/\/dead-letters\/audit\//);
    const payload = await page.locator('pre.payload').textContent();
    expect(payload).toContain(`<script>window.__xss = 1; alert('xss')</script>`);
    expect(payload).toContain('<a href=\\"javascript:alert(1)\\">javascript:alert(1)</a>');
    expect(await page.locator('#last-error').innerText()).toBe('HTTP 410 Gone');
    expect(await page.evaluate(() => (globalThis as { __xss?: number }).__xss)).toBeUndefined();
    expect(await page.locator('a[href^="javascript:"]').count()).toBe(0);
    expect(await page.locator('script:not([src="/console.js"])').count()).toBe(0);
    await shot('dead-letter');

    await page.goBack();
    failing = false;
    await page.check('input[name=job]');
    await page.click('button[value=selected]');
    expect(await page.locator('#result').textContent()).toContain('replayed 1 dead letter(s)');
    const delivered = await waitFor(
      () =>
        world.receiver.requests.find(
          (r) => r.url === '/hook/audit' && r.headers['webhook-id'] === xssId && r.status === 204,
        ),
      { timeoutMs: 20_000, what: 'the replayed event at the receiver' },
    );
    expect(delivered.verified).toBe(true);
    expect(JSON.parse(delivered.body)).toMatchObject({ id: xssId, type: 'chat message' });
    // Only the ticked one: the same event stays dead at the other destination, the others stay too.
    await waitDead('audit', 2);
    expect(await dead('archive')).toBe(3);
    expect(dialogs).toEqual([]);
  });

  test('a POST with the session but without its CSRF token is refused with 403 and changes nothing', async () => {
    const cookie = (await browser.context.cookies()).find((c) => c.name === 'imkit_console')!;
    const headers = {
      cookie: `${cookie.name}=${cookie.value}`,
      'content-type': 'application/x-www-form-urlencoded',
    };
    const noToken = await fetch(`${base}/dead-letters/purge`, {
      method: 'POST',
      headers,
      body: 'confirm=yes',
    });
    expect(noToken.status).toBe(403);
    const wrong = await fetch(`${base}/dead-letters/purge`, {
      method: 'POST',
      headers,
      body: 'confirm=yes&csrf=forged',
    });
    expect(wrong.status).toBe(403);
    expect(await dead('archive')).toBe(3);
    expect(await dead('audit')).toBe(2);
  });

  test('purge asks for confirmation, then removes what matched, with an audit line naming the session, not the token', async () => {
    await page.goto(`${base}/dead-letters?destination=archive`);
    expect(await page.locator('#matching').textContent()).toContain('3 dead letter(s) match');
    await page.click('button:has-text("Purge all matching")');
    expect(await page.locator('h1').innerText()).toBe('Purge 3 dead letter(s)?');
    expect(await dead('archive')).toBe(3);
    await page.click('button:has-text("Purge 3")');
    expect(await page.locator('#result').textContent()).toContain('removed 3 dead letter(s)');
    expect(await dead('archive')).toBe(0);
    expect(await dead('audit')).toBe(2);

    const audit = await waitFor(() =>
      bridge.records().find((r) => r.audit === 'dlq purge' && r.removed === 3),
    );
    expect(audit).toMatchObject({ filter: { destination: 'archive' }, matched: 3 });
    expect(String(audit.who)).toMatch(/^console session [0-9a-f]{8} from 127\.0\.0\.1$/);
    const replayAudit = bridge.records().find((r) => r.audit === 'dlq replay');
    expect(replayAudit).toMatchObject({ replayed: 1, jobs: [expect.stringMatching(/^audit\//)] });
    expect(bridge.logs.join('\n')).not.toContain(ADMIN_TOKEN);
  });

  test('quarantine: the raw payload shows as text and no script runs', async () => {
    await page.goto(`${base}/quarantine`);
    const rows = page.locator('#quarantine tr a');
    expect(await rows.count()).toBe(1);
    await shot('quarantine');
    await rows.first().click();
    expect(await page.locator('pre.payload').textContent()).toBe(QUARANTINED_TEXT);
    expect(dialogs).toEqual([]);
    await shot('quarantine-entry');

    // A script with the bearer token needs no session and no CSRF token; its audit line says so.
    const purged = await fetch(`${base}/quarantine/purge`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${ADMIN_TOKEN}`,
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: 'confirm=yes',
    });
    expect(purged.status).toBe(200);
    expect(await purged.text()).toContain('removed 1 quarantined payload(s)');
    const audit = await waitFor(() => bridge.records().find((r) => r.audit === 'dlq purge --quarantine'));
    expect(audit).toMatchObject({ who: 'console bearer from 127.0.0.1', removed: 1 });
    await page.goto(`${base}/quarantine`);
    expect(await page.locator('#matching').innerText()).toBe('0 payload(s) match.');
  });

  test('logout ends the session', async () => {
    await page.goto(`${base}/`);
    await page.click('header button');
    await page.waitForURL(`${base}/login`);
    await page.goto(`${base}/quarantine`);
    expect(new URL(page.url()).pathname).toBe('/login');
  });
});
