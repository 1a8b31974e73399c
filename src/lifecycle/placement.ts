import { createHash } from 'node:crypto';

/** A live member as placement sees it. */
export interface PlacementMember {
  readonly id: string;
  /** Server time (ms) from which the member may be given accounts; later for a member that flapped. */
  readonly eligibleAt: number;
}

export interface Plan {
  /** Per account, the members that should hold it, best first. */
  readonly targets: ReadonlyMap<string, readonly string[]>;
  /** The accounts `self` is among the targets of. */
  readonly mine: ReadonlySet<string>;
}

/** 64 bits of sha256, as two 32-bit halves: computed once per account and per member. */
export type Digest = readonly [number, number];

export function digestOf(id: string): Digest {
  const hash = createHash('sha256').update(id).digest();
  return [hash.readUInt32BE(0), hash.readUInt32BE(4)];
}

/** murmur3's finaliser: spreads the bits of one 32-bit half. */
function fmix32(value: number): number {
  let h = value >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Rendezvous weight of a member for an account: 53 bits, so it is exact as a JavaScript number. */
export function weight(account: Digest, member: Digest): number {
  const high = fmix32(account[0] ^ member[0]) & 0x1fffff;
  const low = fmix32(account[1] ^ member[1]);
  return high * 0x1_0000_0000 + low;
}

/**
 * Rendezvous (highest random weight) placement: each account goes to the `copies` members that weigh
 * most for it, so a member joining or leaving moves only its own share. Digests are cached, so a
 * plan over thousands of accounts costs one weight per account and member.
 */
export class Placement {
  private readonly digests = new Map<string, Digest>();
  private readonly memberDigests = new Map<string, Digest>();

  constructor(
    private readonly accounts: readonly string[],
    private readonly copies: number,
  ) {
    for (const account of accounts) this.digests.set(account, digestOf(account));
  }

  /**
   * The ranking is over eligible members (eligible by `now`). When fewer than `copies` are eligible,
   * the other live members fill up, in rank order, so a small fleet or a cold start never waits for a
   * settle to end.
   */
  plan(members: readonly PlacementMember[], self: string, now: number): Plan {
    const eligible = members.filter((m) => m.eligibleAt <= now);
    const fill = members.filter((m) => m.eligibleAt > now);
    const eligibleDigests = eligible.map((m) => [m.id, this.digest(m.id)] as const);
    const fillDigests = fill.map((m) => [m.id, this.digest(m.id)] as const);
    const targets = new Map<string, string[]>();
    const mine = new Set<string>();
    for (const account of this.accounts) {
      const digest = this.digests.get(account)!;
      const chosen = top(digest, eligibleDigests, this.copies);
      if (chosen.length < this.copies) chosen.push(...top(digest, fillDigests, this.copies - chosen.length));
      targets.set(account, chosen);
      if (chosen.includes(self)) mine.add(account);
    }
    return { targets, mine };
  }

  private digest(member: string): Digest {
    let digest = this.memberDigests.get(member);
    if (!digest) this.memberDigests.set(member, (digest = digestOf(member)));
    return digest;
  }
}

/** The `count` heaviest members for an account, heaviest first; equal weights go by member id. */
function top(account: Digest, members: readonly (readonly [string, Digest])[], count: number): string[] {
  if (count <= 0) return [];
  const ranked = members.map(([id, digest]) => ({ id, w: weight(account, digest) }));
  ranked.sort((a, b) => b.w - a.w || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  return ranked.slice(0, count).map((r) => r.id);
}
