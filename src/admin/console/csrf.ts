import { digest, sameSecret } from './auth.js';
import type { Session } from './session.js';

export const CSRF_FIELD = 'csrf';

/**
 * Whether a form carries its session's CSRF token. The cookie is `SameSite=Strict` already; the token
 * also stops a request from a page that shares the site (another service on the same host name).
 */
export function csrfMatches(session: Session, candidate: string | undefined): boolean {
  return candidate !== undefined && sameSecret(candidate, digest(session.csrf));
}
