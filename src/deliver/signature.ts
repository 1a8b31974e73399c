import { createHmac } from 'node:crypto';

/**
 * Standard Webhooks signing: `v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`, keyed with the
 * base64 part after `whsec_`. Keys are decoded once per webhook, not per attempt.
 */
export class WebhookSigner {
  private readonly keys: readonly Buffer[];

  constructor(secret: string | readonly string[] | undefined) {
    const secrets = secret === undefined ? [] : typeof secret === 'string' ? [secret] : secret;
    this.keys = secrets.map((s) => Buffer.from(s.startsWith('whsec_') ? s.slice(6) : s, 'base64'));
  }

  get enabled(): boolean {
    return this.keys.length > 0;
  }

  /** One `v1,` signature per secret, space-separated, so receivers holding either key accept during rotation. */
  sign(id: string, timestampSeconds: number, body: string): string {
    const content = `${id}.${timestampSeconds}.${body}`;
    return this.keys
      .map((key) => `v1,${createHmac('sha256', key).update(content).digest('base64')}`)
      .join(' ');
  }
}
