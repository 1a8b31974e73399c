import { Redis } from 'ioredis';
import { infoField, waitFor } from '../test/support/redis.js';

/**
 * Empties Redis and rewrites its AOF, so the next measured run starts where every other did. Left
 * as it was, what earlier runs wrote stayed, and Redis started an AOF rewrite (a fork that writes
 * the whole data set out again, on these same two cores) whenever the file had doubled: inside
 * whichever run crossed that line, most often the bridge's, as it writes more per event. Later
 * rounds were then systematically slower than the first (docs/performance.md, "AOF rewrites
 * inside the burst").
 */
export async function emptyRedis(url: string): Promise<void> {
  const client = new Redis(url);
  const rewriting = async () => {
    const info = await client.info('persistence');
    return (
      infoField(info, 'aof_rewrite_in_progress') === '1' || infoField(info, 'aof_rewrite_scheduled') === '1'
    );
  };
  const settled = () =>
    waitFor(async () => !(await rewriting()), {
      timeoutMs: 120_000,
      intervalMs: 100,
      what: 'AOF rewrite done',
    });
  try {
    await settled();
    await client.flushall();
    await client.bgrewriteaof();
    await settled();
  } finally {
    client.disconnect();
  }
}

/** Redis's append-only file: its size and how many rewrites it has had. */
export async function aofOf(url: string): Promise<{ bytes: number; rewrites: number }> {
  const client = new Redis(url);
  try {
    const info = await client.info('persistence');
    return {
      bytes: Number(infoField(info, 'aof_current_size') ?? NaN),
      rewrites: Number(infoField(info, 'aof_rewrites') ?? NaN),
    };
  } finally {
    client.disconnect();
  }
}
