import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { BridgeMetrics } from '../admin/metrics.js';
import type { Logger } from './logger.js';
import { producerConnection, type RedisClient, type RedisSettings } from '../queue/redis.js';

/** A live ingest process, as the membership ZSET and info hash in Redis describe it (server times, ms). */
export interface Member {
  readonly id: string;
  readonly host: string;
  readonly joinedAt: number;
  /** From then on it may be given accounts; later than `joinedAt` for a host that flapped. */
  readonly eligibleAt: number;
  /** Its lease ends then unless it renews. */
  readonly expiresAt: number;
}

export interface MembershipView {
  readonly self: string;
  readonly epoch: number;
  /** Redis server time of the tick that produced this view. */
  readonly now: number;
  /** Registered and seen the others for a full tick: placement may act on this view. */
  readonly synced: boolean;
  readonly members: readonly Member[];
}

export interface MembershipOptions {
  redis: RedisSettings;
  prefix: string;
  /** ms without a renewal after which a member is gone. */
  lease: number;
  host: string;
  logger: Logger;
  metrics: BridgeMetrics;
}

/**
 * This process's membership among the ingest processes that share the accounts. Every tick runs one
 * script that renews this member's lease, purges expired members and reports the view; all times
 * come from Redis `TIME`, so host clocks never matter. While Redis cannot be reached the view is
 * unsynced: the placer then keeps what it holds and takes nothing new. Keys share the `{ingest}`
 * hash tag, so the scripts also run on a Redis Cluster.
 */
export class Membership extends EventEmitter<{ tick: [MembershipView] }> {
  readonly id: string;
  /** Tick period: bounds how long after an expiry the others notice it. */
  readonly tickMs: number;
  private readonly connection: RedisClient;
  private readonly log: Logger;
  private readonly keys: readonly string[];
  private readonly heldKeyOfSelf: string;
  /** Successful ticks in a row: the first registers, the next has seen everyone registered meanwhile. */
  private okTicks = 0;
  private everSynced = false;
  private left = false;
  private current: MembershipView | undefined;
  private timer: NodeJS.Timeout | undefined;
  private ticking: Promise<void> | undefined;
  /** Accounts live here as last written to Redis; undefined: write them at the next tick. */
  private heldWritten: string | undefined;
  private held: readonly string[] = [];

  constructor(private readonly opts: MembershipOptions) {
    super();
    this.id = `${opts.host}/${process.pid}/${randomBytes(2).toString('hex')}`;
    this.tickMs = Math.min(1_000, opts.lease / 5);
    this.log = opts.logger.child({ stage: 'membership', member: this.id });
    const base = `${opts.prefix}:{ingest}`;
    this.keys = [`${base}:members`, `${base}:info`, `${base}:flaps`, `${base}:epoch`, `${base}:tick`];
    this.heldKeyOfSelf = this.heldKey(this.id);
    this.connection = producerConnection(opts.redis, 'imkit-bridge-membership');
    this.connection.on('error', () => {});
    this.connection.defineCommand('bridgeMembershipTick', { numberOfKeys: 6, lua: TICK });
    this.connection.defineCommand('bridgeMembershipLeave', { numberOfKeys: 4, lua: LEAVE });
  }

  start(): void {
    this.timer ??= setInterval(() => void this.tick(), this.tickMs);
    void this.tick();
  }

  /** The latest view; undefined until the first tick succeeded. */
  view(): MembershipView | undefined {
    return this.current;
  }

  /** The accounts live here; written to Redis at the next tick when they changed. */
  reportHeld(live: ReadonlySet<string>): void {
    this.held = [...live].sort();
  }

  /**
   * Of `accounts`, those every one of their `targets` (live members) reports live: the accounts this
   * process may let go. Rejects when Redis does not answer.
   */
  async confirmHeld(targets: ReadonlyMap<string, readonly string[]>): Promise<Set<string>> {
    const byMember = new Map<string, string[]>();
    for (const [account, members] of targets)
      for (const member of members) {
        let list = byMember.get(member);
        if (!list) byMember.set(member, (list = []));
        list.push(account);
      }
    const missing = new Set<string>();
    await Promise.all(
      [...byMember].map(async ([member, accounts]) => {
        const flags = await this.connection.smismember(this.heldKey(member), ...accounts);
        accounts.forEach((account, i) => flags[i] !== 1 && missing.add(account));
      }),
    );
    return new Set([...targets.keys()].filter((account) => !missing.has(account)));
  }

  /**
   * The members whose last renewal is at most `withinMs` old by Redis time: a member that stopped
   * renewing (killed, frozen) drops out of this long before its lease ends. Rejects when Redis does not answer.
   */
  async renewedWithin(withinMs: number): Promise<string[]> {
    const [[, time], [, scores]] = (await this.connection
      .multi()
      .time()
      .zrange(this.keys[0]!, 0, -1, 'WITHSCORES')
      .exec()) as [[unknown, [string, string]], [unknown, string[]]];
    const now = Number(time[0]) * 1000 + Math.floor(Number(time[1]) / 1000);
    const renewed: string[] = [];
    // A member's score is its last renewal plus the lease.
    for (const [id, expiresAt] of pairs(scores))
      if (Number(expiresAt) - this.opts.lease >= now - withinMs) renewed.push(id);
    return renewed;
  }

  /** Per account, how many of `members` report it live. Rejects when Redis does not answer. */
  async holderCounts(accounts: readonly string[], members: readonly string[]): Promise<Map<string, number>> {
    const counts = new Map(accounts.map((account) => [account, 0]));
    if (accounts.length === 0) return counts;
    await Promise.all(
      members.map(async (member) => {
        const flags = await this.connection.smismember(this.heldKey(member), ...accounts);
        accounts.forEach((account, i) => flags[i] === 1 && counts.set(account, counts.get(account)! + 1));
      }),
    );
    return counts;
  }

  /** Leaves at once (the others plan without this process at their next tick); false when Redis did not answer. */
  async leave(): Promise<boolean> {
    this.left = true;
    await this.stopTicking();
    try {
      await (this.connection as unknown as Scripts).bridgeMembershipLeave(
        this.keys[0]!,
        this.keys[1]!,
        this.keys[3]!,
        this.heldKeyOfSelf,
        this.id,
      );
      this.opts.metrics.membershipChanges.inc({ change: 'leave' });
      this.log.info({ member: this.id }, 'member left');
      return true;
    } catch (err) {
      this.log.warn({ err }, 'cannot leave the membership: the others take over after the lease');
      return false;
    }
  }

  async close(): Promise<void> {
    await this.stopTicking();
    this.connection.disconnect();
  }

  private async stopTicking(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.ticking;
  }

  private tick(): Promise<void> {
    if (this.left) return Promise.resolve();
    this.ticking ??= this.runTick().finally(() => (this.ticking = undefined));
    return this.ticking;
  }

  private async runTick(): Promise<void> {
    const held = this.held.join('\n');
    const writeHeld = held !== this.heldWritten;
    let reply: TickReply;
    try {
      reply = await (this.connection as unknown as Scripts).bridgeMembershipTick(
        ...(this.keys as [string, string, string, string, string]),
        this.heldKeyOfSelf,
        this.id,
        this.opts.host,
        String(this.opts.lease),
        String(this.current?.epoch ?? -1),
        writeHeld ? '1' : '0',
        ...(writeHeld ? this.held : []),
      );
    } catch (err) {
      if (this.okTicks >= 2)
        this.log.warn({ err }, 'membership unsynced: keeping the accounts held, taking none, releasing none');
      this.okTicks = 0;
      this.heldWritten = undefined;
      if (this.current) this.publish({ ...this.current, synced: false });
      return;
    }
    if (writeHeld) this.heldWritten = held;
    this.absorb(reply);
  }

  private absorb([epoch, now, joined, resync, expired, flat]: TickReply): void {
    if (joined === 1) {
      this.opts.metrics.membershipChanges.inc({ change: 'join' });
      this.log.info({ host: this.opts.host }, 'member joined');
    }
    for (const [id, flaps] of pairs(expired)) {
      this.opts.metrics.membershipChanges.inc({ change: 'expire' });
      this.log.warn({ expired: id, flaps: Number(flaps) }, 'member expired: no renewal within the lease');
    }
    if (resync === 1)
      this.log.info('no membership tick for half a lease (Redis away?): every lease extended');
    const members = flat.length > 0 ? parseMembers(flat) : (this.current?.members ?? []);
    this.okTicks++;
    const synced = this.okTicks >= 2;
    if (synced && this.okTicks === 2 && this.everSynced) this.log.info('membership resynced');
    if (synced) this.everSynced = true;
    this.opts.metrics.ingestMembers.set(members.length);
    this.publish({ self: this.id, epoch, now, synced, members });
  }

  private publish(view: MembershipView): void {
    this.current = view;
    this.emit('tick', view);
  }

  private heldKey(member: string): string {
    return `${this.opts.prefix}:{ingest}:held:${member}`;
  }
}

type TickReply = [number, number, number, number, string[], string[]];

interface Scripts {
  bridgeMembershipTick(...args: string[]): Promise<TickReply>;
  bridgeMembershipLeave(...args: string[]): Promise<number>;
}

function* pairs(flat: readonly string[]): Generator<[string, string]> {
  for (let i = 0; i + 1 < flat.length; i += 2) yield [flat[i]!, flat[i + 1]!];
}

/** `id, expiresAt, "host joinedAt eligibleAt"` triples. */
function parseMembers(flat: readonly string[]): Member[] {
  const members: Member[] = [];
  for (let i = 0; i + 2 < flat.length; i += 3) {
    const [host = '', joinedAt = '0', eligibleAt = '0'] = flat[i + 2]!.split(' ');
    members.push({
      id: flat[i]!,
      host,
      joinedAt: Number(joinedAt),
      eligibleAt: Number(eligibleAt),
      expiresAt: Number(flat[i + 1]),
    });
  }
  return members;
}

/**
 * KEYS: members (ZSET id → lease end), info (HASH id → "host joinedAt eligibleAt"), flaps (HASH host →
 * "count lastExpiryAt"), epoch, tick (server time of the last tick by anyone), this member's held set.
 * ARGV: self, host, lease, known epoch, write held (0/1), held accounts…
 * No tick by anyone for half a lease means Redis was away (a restart, a failover): every lease is
 * extended instead of purging everyone at once. A member that expired while the caller was live
 * counts as a flap of its host, and a new member from a host that flapped within 10 leases is
 * eligible only after lease × 2^(flaps-1), at most 8 leases.
 * Returns epoch, now, joined (0/1), resync (0/1), expired [id, flaps]…, and when the epoch differs
 * from the known one the members as [id, lease end, info]….
 */
const TICK = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local self, host, lease, known = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local last = tonumber(redis.call('GET', KEYS[5]) or '')
redis.call('SET', KEYS[5], now)
local resync = 0
local expired = {}
if last == nil or now - last > lease / 2 then
  resync = 1
  local all = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
  for i = 1, #all, 2 do
    if tonumber(all[i + 1]) < now + lease then redis.call('ZADD', KEYS[1], now + lease, all[i]) end
  end
else
  local selfLive = tonumber(redis.call('ZSCORE', KEYS[1], self) or '0') > now
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)) do
    local info = redis.call('HGET', KEYS[2], id)
    redis.call('ZREM', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
    local flaps = 0
    if selfLive and info then
      local h = string.match(info, '^(%S+)')
      local record = redis.call('HGET', KEYS[3], h)
      if record then
        local count, at = string.match(record, '^(%d+) (%d+)$')
        if tonumber(at) > now - 10 * lease then flaps = tonumber(count) end
      end
      flaps = flaps + 1
      redis.call('HSET', KEYS[3], h, flaps .. ' ' .. now)
    end
    redis.call('INCR', KEYS[4])
    table.insert(expired, id)
    table.insert(expired, tostring(flaps))
  end
end
local joined = 0
if not redis.call('ZSCORE', KEYS[1], self) then
  local settle = 0
  local record = redis.call('HGET', KEYS[3], host)
  if record then
    local count, at = string.match(record, '^(%d+) (%d+)$')
    if tonumber(at) > now - 10 * lease then settle = math.min(lease * 2 ^ (tonumber(count) - 1), 8 * lease) end
  end
  redis.call('HSET', KEYS[2], self, host .. ' ' .. now .. ' ' .. (now + settle))
  redis.call('INCR', KEYS[4])
  joined = 1
end
redis.call('ZADD', KEYS[1], now + lease, self)
if ARGV[5] == '1' then
  redis.call('DEL', KEYS[6])
  for i = 6, #ARGV, 5000 do
    redis.call('SADD', KEYS[6], unpack(ARGV, i, math.min(i + 4999, #ARGV)))
  end
end
redis.call('PEXPIRE', KEYS[6], 3 * lease)
local epoch = tonumber(redis.call('GET', KEYS[4]) or '0')
local view = {}
if epoch ~= known then
  local all = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
  for i = 1, #all, 2 do
    table.insert(view, all[i])
    table.insert(view, all[i + 1])
    table.insert(view, redis.call('HGET', KEYS[2], all[i]) or '? 0 0')
  end
end
return { epoch, now, joined, resync, expired, view }
`;

/** KEYS: members, info, epoch, this member's held set. ARGV: self. */
const LEAVE = `
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[4])
redis.call('INCR', KEYS[3])
return 0
`;
