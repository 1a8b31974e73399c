import { Agent, request } from 'undici';
import { ImkitAuthError, ImkitRestError, ImkitUnreachableError } from '../errors.js';

export interface ImkitRestOptions {
  /** IMKIT base URL (the same as the socket URL). */
  url: string;
  clientKey?: string;
  apiKey?: string;
  /** Whole-request timeout, ms. Default 15 000. */
  timeoutMs?: number;
}

export interface IssuedToken {
  token: string;
  /** Epoch ms, from `result.expirationDate`. */
  expiresAt: number;
}

export interface Page<T> {
  totalCount: number;
  data: T[];
}

export interface ImkitRoom {
  _id: string;
  [key: string]: unknown;
}

export interface ImkitMessage {
  _id: string;
  room?: string;
  messageType?: string;
  messageTimeMS?: number;
  updatedAtMS?: number;
  [key: string]: unknown;
}

/**
 * A small client for the IMKIT REST calls the bridge makes. Every answer must be the
 * `{ RC, RM, result }` envelope with `RC === 0`; anything else becomes a typed error whose message
 * names the path but never a token or key.
 */
export class ImkitRest {
  private readonly base: string;
  private readonly timeoutMs: number;
  private readonly agent = new Agent({ connections: 4 });
  private closed = false;

  constructor(private readonly options: ImkitRestOptions) {
    this.base = options.url.replace(/\/+$/, '');
    this.timeoutMs = options.timeoutMs ?? 15_000;
  }

  /** `POST /admin/clients` with `issueAccessToken: true` (needs the API key). */
  async issueToken(clientId: string, nickname?: string): Promise<IssuedToken> {
    const result = (await this.call('POST', '/admin/clients', this.adminHeaders(), {
      _id: clientId,
      ...(nickname ? { nickname } : {}),
      issueAccessToken: true,
    })) as { token?: unknown; expirationDate?: unknown } | undefined;
    const expiresAt = typeof result?.expirationDate === 'string' ? Date.parse(result.expirationDate) : NaN;
    if (typeof result?.token !== 'string' || !result.token || Number.isNaN(expiresAt)) {
      throw new ImkitRestError(
        'POST /admin/clients: answer lacks result.token or result.expirationDate',
        200,
        0,
      );
    }
    return { token: result.token, expiresAt };
  }

  /** `GET /rooms?updatedAfter&skip&limit` as the token's client. */
  async rooms(
    token: string,
    q: { updatedAfter: number; skip: number; limit: number },
  ): Promise<Page<ImkitRoom>> {
    const qs = new URLSearchParams({
      updatedAfter: new Date(q.updatedAfter).toISOString(),
      skip: String(q.skip),
      limit: String(q.limit),
    });
    return asPage<ImkitRoom>(await this.call('GET', `/rooms?${qs}`, this.clientHeaders(token)), '/rooms');
  }

  /** `GET /rooms/:id/messages/v3?afterTime&limit` as the token's client; `afterTime` in epoch ms. */
  async roomMessages(
    token: string,
    roomId: string,
    q: { afterTime: number; limit: number },
  ): Promise<Page<ImkitMessage>> {
    const qs = new URLSearchParams({ afterTime: String(q.afterTime), limit: String(q.limit) });
    const path = `/rooms/${encodeURIComponent(roomId)}/messages/v3`;
    return asPage<ImkitMessage>(await this.call('GET', `${path}?${qs}`, this.clientHeaders(token)), path);
  }

  /** Aborts calls still waiting for an answer: at close nobody is left to use it. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.agent.destroy();
  }

  private adminHeaders(): Record<string, string> {
    return this.options.apiKey ? { 'IM-API-KEY': this.options.apiKey } : {};
  }

  private clientHeaders(token: string): Record<string, string> {
    const key = this.options.clientKey;
    return {
      ...(key ? { 'IM-CLIENT-KEY': key, CLIENT_KEY: key } : {}),
      'IM-Authorization': token,
      Authorization: token,
    };
  }

  private async call(method: 'GET' | 'POST', path: string, headers: Record<string, string>, body?: unknown) {
    const where = `${method} ${path.split('?')[0]}`;
    let status: number;
    let text: string;
    try {
      const res = await request(`${this.base}${path}`, {
        method,
        dispatcher: this.agent,
        headers: {
          accept: 'application/json',
          ...(body ? { 'content-type': 'application/json' } : {}),
          ...headers,
        },
        body: body ? JSON.stringify(body) : undefined,
        signal: AbortSignal.timeout(this.timeoutMs),
      });
      status = res.statusCode;
      text = await res.body.text();
    } catch (err) {
      const reason =
        err instanceof Error && err.name === 'TimeoutError' ? `no answer in ${this.timeoutMs} ms` : 'failed';
      throw new ImkitUnreachableError(`${where} ${reason}`, { cause: err });
    }
    let envelope: { RC?: unknown; RM?: unknown; result?: unknown } | undefined;
    try {
      envelope = JSON.parse(text) as typeof envelope;
    } catch {
      envelope = undefined;
    }
    const rc = envelope?.RC;
    if (status === 401 || rc === 401) {
      throw new ImkitAuthError(`${where}: unauthorized (HTTP ${status}, RC ${String(rc)})`, status, rc);
    }
    if (status < 200 || status >= 300 || rc !== 0) {
      const rm = typeof envelope?.RM === 'string' ? `: ${envelope.RM.slice(0, 200)}` : '';
      throw new ImkitRestError(`${where}: HTTP ${status}, RC ${String(rc)}${rm}`, status, rc);
    }
    return envelope?.result;
  }
}

function asPage<T>(result: unknown, path: string): Page<T> {
  const r = result as { totalCount?: unknown; data?: unknown } | undefined;
  if (!r || !Array.isArray(r.data)) throw new ImkitRestError(`GET ${path}: answer lacks result.data`, 200, 0);
  return { totalCount: typeof r.totalCount === 'number' ? r.totalCount : r.data.length, data: r.data as T[] };
}
