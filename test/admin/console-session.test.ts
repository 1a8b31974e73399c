import { expect, test } from 'vitest';
import { csrfMatches } from '../../src/admin/console/csrf.js';
import { sessionCookie, sessionIdOf, Sessions } from '../../src/admin/console/session.js';

test('a session ends after its timeout, on logout, and the oldest goes when the cap is reached', () => {
  let now = 1_000_000;
  const sessions = new Sessions(60_000, 2, () => now);
  const first = sessions.create('10.0.0.1');
  expect(sessions.get(first.id)).toBe(first);
  now += 59_999;
  expect(sessions.get(first.id)).toBe(first);
  now += 1;
  expect(sessions.get(first.id)).toBeUndefined();

  const a = sessions.create('10.0.0.1');
  const b = sessions.create('10.0.0.2');
  const c = sessions.create('10.0.0.3');
  expect(sessions.get(a.id)).toBeUndefined();
  expect(sessions.get(b.id)).toBe(b);
  sessions.end(b.id);
  expect(sessions.get(b.id)).toBeUndefined();
  expect(sessions.get(c.id)).toBe(c);
  expect(sessions.get(undefined)).toBeUndefined();
  expect(sessions.get('made-up')).toBeUndefined();
});

test('session id, CSRF token and audit tag are distinct random values; the tag reveals neither', () => {
  const sessions = new Sessions(60_000);
  const s = sessions.create('127.0.0.1');
  const t = sessions.create('127.0.0.1');
  expect(s.id).toMatch(/^[\w-]{43}$/);
  expect(s.csrf).toMatch(/^[\w-]{43}$/);
  expect(s.tag).toMatch(/^[0-9a-f]{8}$/);
  expect(new Set([s.id, s.csrf, t.id, t.csrf]).size).toBe(4);
  expect(s.id).not.toContain(s.tag);
});

test('the CSRF token must match its own session exactly', () => {
  const sessions = new Sessions(60_000);
  const s = sessions.create('127.0.0.1');
  const other = sessions.create('127.0.0.1');
  expect(csrfMatches(s, s.csrf)).toBe(true);
  expect(csrfMatches(s, other.csrf)).toBe(false);
  expect(csrfMatches(s, s.csrf.slice(1))).toBe(false);
  expect(csrfMatches(s, '')).toBe(false);
  expect(csrfMatches(s, undefined)).toBe(false);
});

test('the cookie is HttpOnly, SameSite=Strict, for the whole console; its value is read back among others', () => {
  const s = new Sessions(60_000).create('127.0.0.1');
  expect(sessionCookie(s, 3600)).toBe(
    `imkit_console=${s.id}; HttpOnly; SameSite=Strict; Path=/; Max-Age=3600`,
  );
  expect(sessionIdOf(`a=1; imkit_console=${s.id}; b=2`)).toBe(s.id);
  expect(sessionIdOf('imkit_consolex=1')).toBeUndefined();
  expect(sessionIdOf(undefined)).toBeUndefined();
});
