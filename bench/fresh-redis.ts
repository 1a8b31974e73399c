import { Redis } from 'ioredis';
import { waitFor } from '../test/support/redis.js';

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
  const rewriting = async () =>
    /aof_rewrite_(in_progress|scheduled):1/.test(await client.info('persistence'));
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
    const field = (name: string) => Number(new RegExp(`^${name}:(\\d+)`, 'm').exec(info)?.[1] ?? NaN);
    return { bytes: field('aof_current_size'), rewrites: field('aof_rewrites') };
  } finally {
    client.disconnect();
  }
}
