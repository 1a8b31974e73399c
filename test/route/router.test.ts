import { describe, expect, it } from 'vitest';
import type { WebhookConfig } from '../../src/config/schema.js';
import { requestBody } from '../../src/route/body.js';
import { Router } from '../../src/route/router.js';

function webhook(id: string, accounts: string[], events: string[]): WebhookConfig {
  return { id, url: `http://127.0.0.1/${id}`, accounts, events } as unknown as WebhookConfig;
}

const all = webhook('all', ['*'], ['*']);
const botChat = webhook('bot-chat', ['bot'], ['chat message']);
const lifecycle = webhook('lifecycle', ['*'], ['bridge.*']);
const gapsOnly = webhook('gaps', ['bot'], ['bridge.gap', 'lastRead']);
const everything = webhook('everything', ['*'], ['*', 'bridge.*']);
const router = new Router([all, botChat, lifecycle, gapsOnly, everything]);
const ids = (account: string, type: string) => router.targets(account, type).map((w) => w.id);

describe('Router', () => {
  it('matches accounts and event types, with "*" for all', () => {
    expect(ids('bot', 'chat message')).toEqual(['all', 'bot-chat', 'everything']);
    expect(ids('other', 'chat message')).toEqual(['all', 'everything']);
    expect(ids('bot', 'lastRead')).toEqual(['all', 'gaps', 'everything']);
    expect(ids('other', 'lastRead')).toEqual(['all', 'everything']);
  });

  it('never sends bridge.* lifecycle events through "*"', () => {
    expect(ids('bot', 'bridge.gap')).toEqual(['lifecycle', 'gaps', 'everything']);
    expect(ids('bot', 'bridge.connected')).toEqual(['lifecycle', 'everything']);
    expect(ids('other', 'bridge.gap')).toEqual(['lifecycle', 'everything']);
    expect(new Router([all]).targets('bot', 'bridge.disconnected')).toEqual([]);
  });

  it('caches per account and type', () => {
    expect(router.targets('bot', 'chat message')).toBe(router.targets('bot', 'chat message'));
    expect(router.targets('bot', 'room')).not.toBe(router.targets('other', 'room'));
  });
});

describe('requestBody', () => {
  it('is the SPEC body with the ISO receive time and the data unchanged', () => {
    const data = { text: 'line\u2028sep "q" \\ 😀', __proto__x: 1, n: [1, null] };
    const body = requestBody({
      id: 'evt_x',
      type: 'chat message',
      account: 'bot',
      receivedAt: 1_764_064_800_123,
      data,
    });
    expect(JSON.parse(body)).toEqual({
      id: 'evt_x',
      type: 'chat message',
      timestamp: '2025-11-25T10:00:00.123Z',
      account: 'bot',
      data,
    });
    expect(Object.keys(JSON.parse(body) as object)).toEqual(['id', 'type', 'timestamp', 'account', 'data']);
  });
});
