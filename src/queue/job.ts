import type { JobsOptions } from 'bullmq';
import type { LaneConfig } from '../config/schema.js';

/** One event on its way to one destination. */
export interface DeliveryEvent {
  readonly id: string;
  /**
   * Non-chat events only (src/route/event-id.ts): lets the delivery claim recognise a copy received
   * in another repeat-window slot. Jobs written before it existed lack it and claim by id alone.
   */
  readonly repeatKey?: string;
  /** A chat message's room id, for destinations whose subject, key or stream name uses `{room}`. */
  readonly room?: string;
  readonly type: string;
  readonly account: string;
  /** Epoch ms the event was received; the source of `imkit_bridge_event_latency_seconds`. */
  readonly receivedAt: number;
  /** The exact request body, serialised once at ingest so every attempt signs the same bytes. */
  readonly body: string;
  /**
   * With tracing on (docs/operations.md, "Tracing"): W3C Trace Context of the event's receipt span,
   * so every delivery attempt, retries and replays included, joins the event's trace. A destination
   * is handed the attempt's own context here instead, for its request or message headers.
   */
  readonly traceparent?: string;
  readonly tracestate?: string;
}

/**
 * What ingest writes: the events of one flush for one destination, in order. A job costs BullMQ three
 * Lua scripts and a (de)serialisation whatever it holds, so under load one job carries many events
 * (docs/performance.md); at a trickle it carries one.
 */
export interface BatchJobData {
  readonly events: readonly DeliveryEvent[];
}

/**
 * One event that the batch path could not settle on its first try: it follows the retry schedule
 * alone, and a dead letter is always one of these, so `dlq list|replay` work per event.
 */
export interface EventJobData extends DeliveryEvent {
  /** Attempts made before this job existed (the batch's first try). */
  readonly attemptsBefore?: number;
  /** Set when the event is already dead (refused for good on the batch's try): the job fails without sending. */
  readonly deadLetter?: string;
}

export type DeliveryJobData = BatchJobData | EventJobData;

export const BATCH_JOB_NAME = 'batch';
/**
 * Events per batch job, and their bodies' total length (UTF-16 units: a size bound, not a byte
 * count): bounds what one worker holds and sends again after it crashed.
 */
export const MAX_BATCH_EVENTS = 200;
export const MAX_BATCH_BODY_LENGTH = 256 * 1024;

export function isBatch(data: DeliveryJobData): data is BatchJobData {
  return Array.isArray((data as BatchJobData).events);
}

export function eventsOf(data: DeliveryJobData): readonly DeliveryEvent[] {
  return isBatch(data) ? data.events : [data];
}

/**
 * A batch job never waits for a destination: it fails only when its outcome cannot be recorded (Redis
 * away), and is then run again; BullMQ's attempts must be finite, so "effectively forever".
 */
export function batchJob(
  jobId: string,
  events: readonly DeliveryEvent[],
): { name: string; data: BatchJobData; opts: JobsOptions & { jobId: string } } {
  return {
    name: BATCH_JOB_NAME,
    data: { events },
    opts: {
      jobId,
      attempts: 1_000_000,
      backoff: { type: 'fixed', delay: 1000 },
      removeOnComplete: true,
      // The failed set is the dead-letter queue: never expire it.
      removeOnFail: false,
    },
  };
}

/**
 * The whole schedule, whatever `attemptsBefore` says: the worker counts those too and ends the job
 * when the sum runs out, and a replay (which drops `attemptsBefore`) gets the whole schedule again.
 */
export function eventJobOptions(destination: Pick<LaneConfig, 'retry'>): JobsOptions {
  return {
    attempts: destination.retry.schedule.length + 1,
    backoff: { type: 'schedule' },
    removeOnComplete: true,
    removeOnFail: false,
  };
}

/** Attempts made for an event before its job existed (the batch's try); 0 for a batch job. */
export function attemptsBefore(data: DeliveryJobData | undefined): number {
  return data && !isBatch(data) ? (data.attemptsBefore ?? 0) : 0;
}

/** Attempts an event job has made in all, counting the batch's try; what `dlq list` shows. */
export function attemptsOf(data: EventJobData, attemptsMade: number): number {
  // A job born dead makes no request of its own; BullMQ still counts its failure as an attempt.
  return attemptsBefore(data) + attemptsMade - (data.deadLetter === undefined ? 0 : 1);
}
