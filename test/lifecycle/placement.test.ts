import { describe, expect, test } from 'vitest';
import { Placement, type PlacementMember } from '../../src/lifecycle/placement.js';

const ACCOUNTS = Array.from({ length: 2000 }, (_, i) => `account-${i}`);
const member = (id: string, extra: Partial<PlacementMember> = {}): PlacementMember => ({
  id,
  eligibleAt: 0,
  ...extra,
});
const NOW = 1_000;

/** Per member, the accounts it is a target of. */
function loads(targets: ReadonlyMap<string, readonly string[]>): Map<string, number> {
  const counts = new Map<string, number>();
  for (const holders of targets.values()) for (const id of holders) counts.set(id, (counts.get(id) ?? 0) + 1);
  return counts;
}

/** Placements (account, member) present in `before` and absent in `after`. */
function moved(
  before: ReadonlyMap<string, readonly string[]>,
  after: ReadonlyMap<string, readonly string[]>,
): string[] {
  const out: string[] = [];
  for (const [account, holders] of before)
    for (const id of holders) if (!after.get(account)!.includes(id)) out.push(`${account}@${id}`);
  return out;
}

describe('rendezvous placement', () => {
  test('is the same in every process, puts each account on `copies` distinct members, and spreads evenly', () => {
    const members = ['host-a/1/aaaa', 'host-b/2/bbbb', 'host-c/3/cccc', 'host-d/4/dddd'].map((id) =>
      member(id),
    );
    const plans = members.map((m) => new Placement(ACCOUNTS, 2).plan(members, m.id, NOW));
    for (const plan of plans) expect(plan.targets).toEqual(plans[0]!.targets);
    for (const holders of plans[0]!.targets.values()) {
      expect(holders).toHaveLength(2);
      expect(new Set(holders).size).toBe(2);
    }
    // 4000 placements over 4 members: each within 10 % of 1000.
    for (const count of loads(plans[0]!.targets).values()) expect(Math.abs(count - 1000)).toBeLessThan(100);
    // `mine` is exactly the accounts a member is a target of.
    plans.forEach((plan, i) => {
      const expected = ACCOUNTS.filter((a) => plan.targets.get(a)!.includes(members[i]!.id));
      expect([...plan.mine].sort()).toEqual(expected.sort());
    });
  });

  test('a member leaving moves only its own accounts; one joining takes only from the others its share', () => {
    const placement = new Placement(ACCOUNTS, 2);
    const four = ['a', 'b', 'c', 'd'].map((id) => member(id));
    const before = placement.plan(four, 'a', NOW).targets;
    const after = placement.plan(four.slice(0, 3), 'a', NOW).targets;
    expect(moved(before, after).every((p) => p.endsWith('@d'))).toBe(true);
    expect(moved(before, after)).toHaveLength(loads(before).get('d')!);

    const five = [...four, member('e')];
    const joined = placement.plan(five, 'a', NOW).targets;
    const lost = moved(before, joined);
    // Every placement that moved went to the newcomer, and it got about a fifth of them.
    expect(lost).toHaveLength(loads(joined).get('e')!);
    expect(Math.abs(lost.length - 800)).toBeLessThan(120);
  });

  test('an ineligible (settling) member is given nothing while enough others are eligible', () => {
    const placement = new Placement(ACCOUNTS, 2);
    const members = [member('a'), member('b'), member('c'), member('flapper', { eligibleAt: NOW + 1 })];
    const plan = placement.plan(members, 'flapper', NOW);
    expect(plan.mine.size).toBe(0);
    // Once its settle is over it takes its share.
    expect(placement.plan(members, 'flapper', NOW + 1).mine.size).toBeGreaterThan(0);
  });

  test('fewer eligible members than copies: the ineligible ones fill up, best ranked first', () => {
    const placement = new Placement(ACCOUNTS, 2);
    const members = [
      member('a'),
      member('new', { eligibleAt: NOW + 60_000 }),
      member('later', { eligibleAt: NOW + 90_000 }),
    ];
    const plan = placement.plan(members, 'a', NOW);
    for (const holders of plan.targets.values()) {
      expect(holders[0]).toBe('a');
      expect(['new', 'later']).toContain(holders[1]);
    }
  });

  test('more copies than members: everyone holds everything', () => {
    const plan = new Placement(ACCOUNTS, 3).plan([member('a'), member('b')], 'b', NOW);
    expect(plan.mine.size).toBe(ACCOUNTS.length);
    for (const holders of plan.targets.values()) expect([...holders].sort()).toEqual(['a', 'b']);
  });

  test('30 accounts on 3 members with copies 1: nobody is left without accounts', () => {
    const accounts = ACCOUNTS.slice(0, 30);
    const members = ['h/101/1a2b', 'h/102/3c4d', 'h/103/5e6f'].map((id) => member(id));
    const counts = loads(new Placement(accounts, 1).plan(members, 'x', NOW).targets);
    expect(counts.size).toBe(3);
  });
});
