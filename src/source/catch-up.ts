import type { Logger } from '../lifecycle/logger.js';
import type { ImkitMessage, ImkitRest } from './imkit-rest.js';

export interface CatchUpOptions {
  rest: Pick<ImkitRest, 'rooms' | 'roomMessages'>;
  token: string;
  /** The disconnected interval, epoch ms. */
  gap: { from: number; to: number };
  logger: Logger;
  /** Page size for both listings. Default 50 rooms, 20 messages (IMKIT's default). */
  roomPageSize?: number;
  messagePageSize?: number;
  /** Most pages fetched in one catch-up, over all rooms; hitting it is logged. Default 500. */
  maxPages?: number;
  /**
   * Messages stamped up to this long after `gap.to` are kept too, ms. IMKIT stamps with its own
   * clock, which may run ahead of ours; the extra ones were also seen live and de-duplicate.
   * Default 60 000.
   */
  clockSkewMs?: number;
}

export interface CatchUpResult {
  /** Chat messages created or updated inside the gap, each once, sorted by `messageTimeMS`. */
  messages: ImkitMessage[];
  /**
   * True when the walk stopped before the end, so some messages may be missing: `maxPages` was
   * reached, or more messages of one room share one millisecond than a page of MAX_MESSAGE_PAGE holds.
   */
  truncated: boolean;
  pages: number;
}

/**
 * The cursor is a time, so a full page whose messages all share the cursor's millisecond cannot be
 * paged past: the page is asked for again, twice as large, up to this size.
 */
const MAX_MESSAGE_PAGE = 100;

/**
 * Fetches the chat messages an account missed while disconnected: rooms updated since the gap
 * started, then each room's messages after that time, paging until a short page. IMKIT documents
 * the page order inconsistently, so pages are sorted locally and the cursor is the newest time seen.
 */
export async function catchUp(opts: CatchUpOptions): Promise<CatchUpResult> {
  const { rest, token, gap, logger } = opts;
  const roomLimit = opts.roomPageSize ?? 50;
  const msgLimit = opts.messagePageSize ?? 20;
  const maxPages = opts.maxPages ?? 500;
  const range = { from: gap.from, to: gap.to + (opts.clockSkewMs ?? 60_000) };
  let pages = 0;
  let capped = false;
  const spend = (): boolean => {
    if (pages >= maxPages) {
      capped = true;
      return false;
    }
    pages++;
    return true;
  };

  const roomIds: string[] = [];
  for (let skip = 0; spend();) {
    const page = await rest.rooms(token, { updatedAfter: gap.from, skip, limit: roomLimit });
    for (const room of page.data)
      if (typeof room?._id === 'string' && !roomIds.includes(room._id)) roomIds.push(room._id);
    if (page.data.length < roomLimit) break;
    skip += page.data.length;
  }

  const byKey = new Map<string, ImkitMessage>();
  const crowdedRooms: string[] = [];
  for (const roomId of roomIds) {
    let afterTime = gap.from;
    let limit = msgLimit;
    while (spend()) {
      const page = await rest.roomMessages(token, roomId, { afterTime, limit });
      let newest = afterTime;
      let fresh = 0;
      for (const m of page.data) {
        if (typeof m?._id !== 'string') continue;
        const time = m.messageTimeMS ?? 0;
        if (time > newest) newest = time;
        const changed = m.updatedAtMS ?? time;
        const key = `${m._id}\u0000${changed}`;
        if (!byKey.has(key) && (inRange(time, range) || inRange(changed, range))) {
          byKey.set(key, m);
          fresh++;
        }
      }
      if (page.data.length < limit) {
        // A grown page can meet a server-side cap on `limit`: short, with more behind it.
        if (limit > msgLimit && page.totalCount > page.data.length) crowdedRooms.push(roomId);
        break;
      }
      // One millisecond of overlap: messages sharing the boundary time are not skipped, and repeats are dropped above.
      const next = Math.max(afterTime, newest - 1);
      if (next === afterTime) {
        if (limit >= MAX_MESSAGE_PAGE) {
          crowdedRooms.push(roomId);
          break;
        }
        limit = Math.min(limit * 2, MAX_MESSAGE_PAGE);
        continue;
      }
      if (fresh === 0) break;
      afterTime = next;
      limit = msgLimit;
    }
  }

  if (crowdedRooms.length > 0) {
    logger.warn(
      { rooms: crowdedRooms, maxPage: MAX_MESSAGE_PAGE },
      'catch-up could not page past messages sharing one millisecond; some messages may be missing',
    );
  }
  if (capped) {
    logger.warn(
      { pages, maxPages, rooms: roomIds.length },
      'catch-up stopped at its page cap; some messages may be missing',
    );
  }
  const messages = [...byKey.values()].sort(
    (a, b) => (a.messageTimeMS ?? 0) - (b.messageTimeMS ?? 0) || (a.updatedAtMS ?? 0) - (b.updatedAtMS ?? 0),
  );
  return { messages, truncated: capped || crowdedRooms.length > 0, pages };
}

function inRange(t: number, gap: { from: number; to: number }): boolean {
  return t >= gap.from && t <= gap.to;
}
