import { Redis } from 'ioredis';
import { eventIdentity } from '../../src/route/event-id.js';
import { quarantineKey } from '../../src/queue/names.js';
import type { WebhookReceiver } from '../../test/support/receiver.js';
import type { Receipt } from './brokers.js';
import type { Ledger, ExpectedEvent } from './traffic.js';
import { SOAK_REPEAT_WINDOW_MS, type SoakWebhook } from './cluster.js';

/** What one destination (a webhook's receiver, a broker's stream) got, checked against the ledger. */
export interface DestinationVerdict {
  readonly destination: string;
  /** Distinct events the destination had to receive. */
  readonly expected: number;
  /** Of those, delivered (2xx; for a broker: stored) at least once. */
  readonly delivered: number;
  /** Ledger keys of events expected, never delivered, and not a dead letter the faults made permanent. */
  readonly lost: string[];
  /** Deliveries (stored copies) beyond the first of an event. */
  readonly duplicates: number;
  /**
   * Deliveries whose transport id (`webhook-id`, `Nats-Msg-Id`, the entry's `id`) or body id differ
   * from the id the event must have, or from the id of the event's first delivery (a duplicate the
   * consumer could not recognise).
   */
  readonly idMismatches: number;
  /** 2xx deliveries whose Standard Webhooks signature did not verify (brokers: none are signed). */
  readonly unverified: number;
  /** Ledger keys of delivered events the simulator never emitted. */
  readonly unexpected: string[];
  /** Ids of events whose last answer from the receiver was 410: the only ones allowed to be dead letters. */
  readonly expectedDead: string[];
  /** Emit → first 2xx, ms, over events delivered without a dead-letter detour. */
  readonly delays: number[];
}

interface Body {
  id: string;
  type: string;
  timestamp: string;
  account: string;
  data: unknown;
}

/** A webhook receiver's requests as receipts. */
export function webhookReceipts(receiver: WebhookReceiver): Receipt[] {
  return receiver.requests.map((r) => ({
    at: r.at,
    body: r.body,
    id: r.headers['webhook-id'] as string | undefined,
    status: r.status,
    verified: r.verified === true,
  }));
}

/** Reads what one destination got against the events it must get. */
export function judgeDestination(
  destination: SoakWebhook,
  expectedEvents: readonly ExpectedEvent[],
  receipts: readonly Receipt[],
): DestinationVerdict {
  const expected = new Map(expectedEvents.map((e) => [e.key, e]));
  const firstDelivery = new Map<string, { at: number; id: string }>();
  /** By event id: the last answer, and the ledger key of the event. */
  const lastStatus = new Map<string, { status: number | undefined; key: string }>();
  let duplicates = 0;
  let idMismatches = 0;
  let unverified = 0;
  const unexpected = new Set<string>();
  for (const request of receipts) {
    const identity = identify(request);
    if (identity === undefined) {
      idMismatches++;
      continue;
    }
    const { id, key } = identity;
    lastStatus.set(id, { status: request.status, key });
    if (request.status === undefined || request.status >= 300) continue;
    if (request.id !== id) idMismatches++;
    if (!request.verified) unverified++;
    if (!expected.has(key)) unexpected.add(key);
    const first = firstDelivery.get(key);
    if (first === undefined) {
      firstDelivery.set(key, { at: request.at, id });
      continue;
    }
    duplicates++;
    if (first.id !== id) idMismatches++;
  }
  const gone = [...lastStatus].filter(([, last]) => last.status === 410);
  const expectedDead = gone.map(([id]) => id);
  const dead = new Set(gone.map(([, last]) => last.key));
  const lost: string[] = [];
  const delays: number[] = [];
  let delivered = 0;
  for (const event of expected.values()) {
    const first = firstDelivery.get(event.key);
    if (first !== undefined) {
      delivered++;
      if (!dead.has(event.key)) delays.push(first.at - event.emittedAt);
    } else if (!dead.has(event.key)) {
      lost.push(event.key);
    }
  }
  return {
    destination: destination.id,
    expected: expected.size,
    delivered,
    lost,
    duplicates,
    idMismatches,
    unverified,
    unexpected: [...unexpected],
    expectedDead,
    delays,
  };
}

/**
 * The id the event in a request must carry, computed from its content and timestamp (not from its
 * headers), and its ledger key, so a duplicate is recognised even if it came with another
 * transport id. Undefined: unreadable body or a body id that disagrees with the content.
 */
function identify(request: Receipt): { id: string; key: string } | undefined {
  let body: Body;
  try {
    body = JSON.parse(request.body) as Body;
  } catch {
    return undefined;
  }
  const { id, repeatKey } = eventIdentity(
    body.account,
    body.type,
    body.data,
    Date.parse(body.timestamp),
    SOAK_REPEAT_WINDOW_MS,
  );
  return body.id === id ? { id, key: repeatKey ?? id } : undefined;
}

/** Markers of malformed payloads found in the quarantine stream, and the stream's length. */
export async function readQuarantine(
  redisUrl: string,
  prefix: string,
  ledger: Ledger,
): Promise<{ length: number; found: Set<string> }> {
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: 3 });
  try {
    const key = quarantineKey(prefix);
    const length = await redis.xlen(key);
    const found = new Set<string>();
    const markers = ledger.malformed.map((m) => m.marker);
    let cursor = '-';
    for (;;) {
      const page = await redis.xrange(key, cursor, '+', 'COUNT', 1000);
      for (const [, fields] of page) {
        const raw = fields[fields.indexOf('raw') + 1] ?? '';
        const once = Buffer.from(raw, 'base64').toString('utf8');
        // Broken-JSON payloads arrive base64-encoded, so their marker is one decoding further down.
        const twice = Buffer.from(once, 'base64').toString('utf8');
        for (const marker of markers) if (once.includes(marker) || twice.includes(marker)) found.add(marker);
      }
      if (page.length < 1000) break;
      cursor = `(${page[page.length - 1]![0]}`;
    }
    return { length, found };
  } finally {
    redis.disconnect();
  }
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}
