import { z } from 'zod';

/** RFC 9110 field name: a token. */
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** Visible Latin-1 characters, spaces and tabs: no CR, LF, NUL or other control characters. */
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

/** Hop-by-hop and message-framing headers: the HTTP client manages them, and a wrong one breaks the request. */
const CLIENT_HEADERS = new Set([
  'connection',
  'content-length',
  'expect',
  'host',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/** Set on every request by the bridge (README, "What a webhook receives"); receivers rely on them. */
export const BRIDGE_HEADERS = new Set([
  'content-type',
  'user-agent',
  'webhook-id',
  'webhook-timestamp',
  'webhook-signature',
]);

/** A webhook's extra request headers: a bad one is a config error naming it, never dropped or sent broken. */
export const webhookHeaders = z.record(z.string(), z.string()).superRefine((headers, ctx) => {
  const seen = new Set<string>();
  for (const [name, value] of Object.entries(headers)) {
    const lower = name.toLowerCase();
    const problem = !HEADER_NAME.test(name)
      ? "not a valid header name (letters, digits and !#$%&'*+.^_`|~- only; no spaces)"
      : CLIENT_HEADERS.has(lower)
        ? 'is managed by the HTTP client (hop-by-hop or framing); remove it'
        : BRIDGE_HEADERS.has(lower)
          ? 'is set by the bridge on every request; remove it'
          : seen.has(lower)
            ? 'repeats another header (names are case-insensitive)'
            : !HEADER_VALUE.test(value)
              ? 'value has characters a header cannot carry (line breaks or other control characters)'
              : undefined;
    if (problem) ctx.addIssue({ code: 'custom', path: [name], message: problem });
    seen.add(lower);
  }
});

/**
 * Moves `user:pass@` out of a webhook URL into an `authorization: Basic` header, so the URL that is
 * requested, logged and displayed carries no credentials, and they are not silently dropped.
 */
export function credentialsToHeader<T extends { url: string; headers: Record<string, string> }>(
  webhook: T,
  ctx: z.RefinementCtx,
): T {
  const url = new URL(webhook.url);
  if (url.username === '' && url.password === '') return webhook;
  if (Object.keys(webhook.headers).some((name) => name.toLowerCase() === 'authorization')) {
    ctx.addIssue({
      code: 'custom',
      path: ['url'],
      message: 'has credentials and headers sets authorization too; keep one of them',
    });
    return z.NEVER;
  }
  const basic = Buffer.from(`${decoded(url.username)}:${decoded(url.password)}`).toString('base64');
  url.username = '';
  url.password = '';
  return { ...webhook, url: url.href, headers: { ...webhook.headers, authorization: `Basic ${basic}` } };
}

function decoded(part: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    return part;
  }
}
