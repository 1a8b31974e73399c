/**
 * The console's only way to produce markup. Every interpolated value is escaped as text unless it is
 * markup this module built, so a chat message, an error or an id from Redis can never become markup,
 * whatever it contains. Links are built from fixed paths with encoded segments (`path`, `query`), so
 * no value chooses a link's scheme or origin.
 */
export class SafeHtml {
  constructor(readonly text: string) {}

  toString(): string {
    return this.text;
  }
}

export type Html = SafeHtml | string | number | undefined | null | false | readonly Html[];

const ENTITIES: Readonly<Record<string, string>> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
  '`': '&#96;',
};

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"'`]/g, (c) => ENTITIES[c]!);
}

function render(value: Html): string {
  if (value instanceof SafeHtml) return value.text;
  if (Array.isArray(value)) return (value as readonly Html[]).map(render).join('');
  if (value === undefined || value === null || value === false) return '';
  return escapeHtml(String(value as string | number));
}

/** A template literal whose values are escaped (arrays are joined, `undefined`/`null`/`false` vanish). */
export function html(strings: TemplateStringsArray, ...values: Html[]): SafeHtml {
  let out = strings[0]!;
  for (let i = 0; i < values.length; i++) out += render(values[i]!) + strings[i + 1]!;
  return new SafeHtml(out);
}

/** A console path: fixed first segment, every other segment percent-encoded. */
export function path(first: string, ...segments: readonly string[]): string {
  return [first, ...segments.map(encodeURIComponent)].join('/');
}

/** `path` plus a query string of the parameters that are set. */
export function query(base: string, params: Readonly<Record<string, string | number | undefined>>): string {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== '') search.set(name, String(value));
  }
  const text = search.toString();
  return text ? `${base}?${text}` : base;
}
