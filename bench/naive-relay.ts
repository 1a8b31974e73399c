/**
 * The benchmark's yardstick: the least a relay can do. One Socket.IO session per account (conf,
 * auth2, pong), and per event: base64 decode, JSON.parse, event id, body, Standard Webhooks HMAC,
 * and an undici POST. No queue, no retry, no durability: an event in flight when this process dies
 * is gone. Run as a child of bench/bench.ts with its settings as JSON in argv[2]; it reports `ready`
 * over IPC once every account is authenticated.
 */
import { io } from 'socket.io-client';
import { Pool } from 'undici';
import { configSchema } from '../src/config/schema.js';
import { eventIdentity } from '../src/route/event-id.js';
import { WebhookSigner } from '../src/deliver/signature.js';

export interface NaiveRelaySettings {
  readonly imkitUrl: string;
  readonly accounts: readonly { readonly id: string; readonly token: string }[];
  readonly webhookUrl: string;
  readonly secret: string;
  /** Keep-alive connections to the webhook, as the bridge's default `concurrency`. */
  readonly connections: number;
}

const settings = JSON.parse(process.argv[2] ?? '{}') as NaiveRelaySettings;
// The bridge's default, so the event id costs what the bridge's does.
const REPEAT_WINDOW_MS = configSchema.shape.repeatWindow.parse(undefined);
const target = new URL(settings.webhookUrl);
const pool = new Pool(target.origin, { connections: settings.connections, keepAliveTimeout: 30_000 });
const signer = new WebhookSigner(settings.secret);
let errors = 0;

function relay(account: string, type: string, payload: unknown): void {
  let data: unknown = payload;
  if (typeof payload === 'string') {
    const text = Buffer.from(payload, 'base64').toString('utf8');
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  const receivedAt = Date.now();
  const { id } = eventIdentity(account, type, data, receivedAt, REPEAT_WINDOW_MS);
  const body = JSON.stringify({ id, type, timestamp: new Date(receivedAt).toISOString(), account, data });
  const timestamp = Math.floor(receivedAt / 1000);
  pool
    .request({
      path: target.pathname,
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'webhook-id': id,
        'webhook-timestamp': String(timestamp),
        'webhook-signature': signer.sign(id, timestamp, body),
      },
      body,
    })
    .then((res) => res.body.dump())
    .catch(() => errors++);
}

let live = 0;
for (const account of settings.accounts) {
  const socket = io(settings.imkitUrl, { forceNew: true, transports: ['websocket'], reconnection: false });
  socket.on('connect', () => {
    void (async () => {
      await socket.emitWithAck('conf', { encoding: 'base64' });
      const ack = (await socket.emitWithAck('auth2', account.token, { deviceId: `naive-${account.id}` })) as {
        RC?: number;
      };
      if (ack?.RC !== 0) throw new Error(`auth2 refused for ${account.id}`);
      if (++live === settings.accounts.length) process.send?.({ op: 'ready' });
    })();
  });
  socket.onAny((name: string, payload: unknown) => {
    if (name === 'ping') socket.emit('pong');
    else relay(account.id, name, payload);
  });
}
process.on('disconnect', () => {
  if (errors > 0) console.error(`naive relay: ${errors} failed POSTs (nothing retries them)`);
  process.exit(0);
});
