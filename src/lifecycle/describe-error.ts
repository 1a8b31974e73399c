/**
 * One line naming what went wrong, with the system or library code when there is one:
 * `connect ECONNREFUSED 127.0.0.1:6379`, `WRONGPASS invalid username-password pair…`,
 * `self-signed certificate (DEPTH_ZERO_SELF_SIGNED_CERT)`. A connection to a name with several
 * addresses fails with an AggregateError whose own message is empty; its first error speaks for it.
 */
export function describeError(err: unknown): string {
  if (typeof err !== 'object' || err === null) return String(err);
  const { message, code, errors } = err as { message?: unknown; code?: unknown; errors?: unknown };
  let text = typeof message === 'string' ? message : '';
  if (!text && Array.isArray(errors) && errors.length > 0) text = describeError(errors[0]);
  if (typeof code === 'string' && !text.includes(code)) text = text ? `${text} (${code})` : code;
  return text || String(err);
}
