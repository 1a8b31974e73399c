import { html, type Html, type SafeHtml } from './html.js';

/** What every signed-in page needs: the session's CSRF token for its forms (absent with a bearer header). */
export interface PageContext {
  readonly csrf: string | undefined;
}

export type Section = 'overview' | 'dead-letters' | 'quarantine';

export function page(
  title: string,
  body: Html,
  options: { context?: PageContext; section?: Section; refreshSeconds?: number } = {},
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
        ${options.refreshSeconds && html`<meta http-equiv="refresh" content="${options.refreshSeconds}" />`}
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

export function csrfField(context: PageContext): Html {
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

export function dash(value: string | number | undefined): string {
  return value === undefined || value === '' ? '—' : String(value);
}

export const sum = (values: readonly (number | undefined)[]) =>
  values.reduce<number>((n, v) => n + (v ?? 0), 0);
