import type { z } from 'zod';
import type { Destination, DestinationDeps, DestinationKind } from './destination.js';
import { amqp } from './destinations/amqp.js';
import { bullmqKind } from './destinations/bullmq.js';
import { http } from './destinations/http.js';
import { nats } from './destinations/nats.js';
import { redisStreamKind } from './destinations/redis-stream.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- a kind's options type is its own business
export type AnyKind = DestinationKind<string, z.ZodObject<any>>;

/** Every kind of destination, by `type`. A new kind: one import and one entry here. */
export const KINDS = {
  http,
  nats,
  amqp,
  'redis-stream': redisStreamKind,
  bullmq: bullmqKind,
} as const satisfies Record<string, AnyKind>;

/** The kinds the config schema knows (the `type` of a destination). */
export type DestinationType = keyof typeof KINDS;

/** Kinds added at run time: see `registerKind`. */
const added = new Map<string, AnyKind>();

/**
 * Adds a kind at run time, for tests that prove the seam with a kind of their own. The config
 * schema is built from KINDS when it loads and does not see it, so a config naming it is built by
 * hand. Returns the function that removes it again.
 */
export function registerKind(kind: AnyKind): () => void {
  if (kind.type in KINDS || added.has(kind.type))
    throw new Error(`kind "${kind.type}" is already registered`);
  added.set(kind.type, kind);
  return () => added.delete(kind.type);
}

export function kindOf(type: string): AnyKind {
  const kind = (KINDS as Record<string, AnyKind>)[type] ?? added.get(type);
  if (!kind) throw new Error(`no destination kind "${type}"`);
  return kind;
}

/** A destination of any kind, from its entry in the config (a parsed entry of that kind). */
export function createDestination(
  config: {
    readonly type: string;
    readonly id: string;
    readonly timeout: number;
    readonly concurrency: number;
  },
  deps: DestinationDeps,
): Destination {
  return kindOf(config.type).create(config as Parameters<AnyKind['create']>[0], deps);
}

/** Where a destination sends, safe to show (`/status`, `config check`): never a credential. */
export function describeDestination(config: { readonly type: string }): string {
  return kindOf(config.type).describe(config as Parameters<AnyKind['describe']>[0]);
}
