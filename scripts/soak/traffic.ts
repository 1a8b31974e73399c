import type { ImkitSimulator, SimMessage } from '../../test/sim/imkit-simulator.js';
import { eventIdentity } from '../../src/route/event-id.js';
import { SOAK_REPEAT_WINDOW_MS, type SoakAccount, type SoakWebhook } from './cluster.js';
import type { Rng } from './rng.js';

/** One distinct event the bridge must deliver (per webhook that wants it). */
export interface ExpectedEvent {
  /** What identifies it whenever received (`ledgerKey`). */
  readonly key: string;
  readonly account: string;
  readonly type: string;
  /** When the simulator first emitted it (epoch ms). */
  readonly emittedAt: number;
  /** Authenticated sockets of the account on the simulator at that moment (zombies of dead replicas included). */
  readonly sockets: number;
}

/** A payload sent that cannot be decoded; `marker` is findable in the quarantined raw bytes. */
export interface MalformedPayload {
  readonly account: string;
  readonly marker: string;
}

/**
 * What identifies an event whenever the bridge received it (src/route/event-id.ts): a chat
 * message's event id, or another event's repeat key (its id also depends on when it was received).
 */
export function ledgerKey(account: string, type: string, data: unknown, receivedAt: number): string {
  const identity = eventIdentity(account, type, data, receivedAt, SOAK_REPEAT_WINDOW_MS);
  return identity.repeatKey ?? identity.id;
}

/**
 * Everything the simulator emitted, keyed by `ledgerKey`. Chat messages emitted again (an edit
 * reaching several accounts, say) are one event by contract. Every other emission has content of
 * its own, so each is one event: repeats of identical content are the business of
 * test/deliver/repeats.test.ts, not of a ledger that cannot know when each replica received them.
 */
export class Ledger {
  readonly events = new Map<string, ExpectedEvent>();
  readonly malformed: MalformedPayload[] = [];
  emissions = 0;
  readonly byType = new Map<string, number>();

  record(account: string, type: string, data: unknown, emittedAt: number, sockets: number): void {
    this.emissions++;
    this.byType.set(type, (this.byType.get(type) ?? 0) + 1);
    const key = ledgerKey(account, type, data, emittedAt);
    if (this.events.has(key) && type !== 'chat message') throw new Error(`${type} emitted twice: ${key}`);
    if (!this.events.has(key)) this.events.set(key, { key, account, type, emittedAt, sockets });
  }

  /** Events a webhook must receive, by its account and event filters (bridge.* is never emitted here). */
  expectedFor(webhook: SoakWebhook): ExpectedEvent[] {
    const anyAccount = webhook.accounts.includes('*');
    const anyType = webhook.events.includes('*');
    return [...this.events.values()].filter(
      (e) =>
        (anyAccount || webhook.accounts.includes(e.account)) && (anyType || webhook.events.includes(e.type)),
    );
  }
}

const OTHER_TYPES = [
  'room',
  'lastRead',
  'typing',
  'ai_streaming',
  'roomPref',
  'myPrefChange',
  'myPrefDelete',
  'invitation',
  'cancelInvitation',
  'userDeleteMessages',
  'messageDeleted',
] as const;

const TEXTS = [
  'Morning! Is the launch still on for 10:00? 🚀',
  'Yes — "final" build is green ✅',
  'مرحبا 👋 — see you at the stand-up',
  '日本語のメッセージ、テスト中',
  'line one\nline two\ttabbed \\ backslash',
  'x'.repeat(4000),
];

/**
 * A seeded stream of IMKIT traffic over several accounts: chat messages (text, objects, system
 * messages) in private and shared rooms, their edits and recalls, and every other server event of
 * the reference. Each emission is recorded in the ledger with the accounts it reaches.
 */
export class TrafficGenerator {
  private seq = 0;
  private readonly recent: { msg: SimMessage; recalled: boolean }[] = [];
  private readonly rooms: { id: string; members: string[] }[];

  constructor(
    private readonly sim: ImkitSimulator,
    private readonly accounts: readonly SoakAccount[],
    private readonly rng: Rng,
    readonly ledger: Ledger,
    private readonly runTag: string,
  ) {
    const ids = accounts.map((a) => a.id);
    this.rooms = [
      ...ids.map((id) => ({ id: `dm-${id}`, members: [id, 'alice'] })),
      // Shared rooms: one message reaches several bridge accounts, each its own event.
      { id: 'room-all', members: [...ids, 'alice', 'bob'] },
      { id: 'room-pair', members: [...ids.slice(0, 2), 'bob'] },
    ];
  }

  /** Emits one event, chosen at random. */
  next(): void {
    const roll = this.rng.next();
    if (roll < 0.4 || this.recent.length === 0) this.chatMessage();
    else if (roll < 0.5) this.edit();
    else if (roll < 0.55) this.recall();
    else this.other(this.rng.pick(OTHER_TYPES));
  }

  /** One payload the account's decoder must quarantine: broken base64, JSON, or a binary frame. */
  malformed(): void {
    const account = this.rng.pick(this.accounts);
    const marker = `malformed-${this.runTag}-${this.seq++}`;
    let raw: unknown;
    if (account.encoding === 'none') raw = Buffer.from(`binary ${marker}`);
    else if (this.rng.next() < 0.5) raw = `!!${marker}!!`;
    else raw = Buffer.from(`{"broken": "${marker}"`).toString('base64');
    this.sim.emitRaw(account.id, this.rng.pick(['chat message', 'room', 'typing']), raw);
    this.ledger.malformed.push({ account: account.id, marker });
  }

  private chatMessage(): void {
    const room = this.rng.pick(this.rooms);
    const roll = this.rng.next();
    const n = this.seq++;
    let message: unknown = `${this.rng.pick(TEXTS)} #${n}`;
    let messageType = 'text';
    if (roll < 0.1) {
      message = { url: `https://files.example/${n}.png`, width: 640, height: 480, caption: 'photo' };
      messageType = 'image';
    } else if (roll < 0.15) {
      message = { members: ['carol'], by: 'alice' };
      messageType = 'addMember';
    }
    const sender = room.members.includes('alice') ? 'alice' : 'bob';
    const msg = this.sim.sendMessage(room.id, message, { members: room.members, sender, messageType });
    this.noteMessage(msg);
    this.recent.push({ msg, recalled: false });
    if (this.recent.length > 200) this.recent.shift();
  }

  private edit(): void {
    const target = this.rng.pick(this.recent);
    if (target.recalled) return this.chatMessage();
    const msg = this.sim.editMessage(
      target.msg._id,
      `${String(target.msg.message).slice(0, 100)} (edited ${this.seq++})`,
    );
    target.msg = msg;
    this.noteMessage(msg);
  }

  private recall(): void {
    const target = this.rng.pick(this.recent);
    if (target.recalled) return this.chatMessage();
    const msg = this.sim.recallMessage(target.msg._id);
    target.recalled = true;
    target.msg = msg;
    this.noteMessage(msg);
  }

  /** A chat message reaches every bridge account that is a member of its room. */
  private noteMessage(msg: SimMessage): void {
    const at = Date.now();
    const room = this.rooms.find((r) => r.id === msg.room)!;
    for (const account of this.accounts) {
      if (room.members.includes(account.id)) {
        this.ledger.record(account.id, 'chat message', msg, at, this.sim.connectedCount(account.id));
      }
    }
  }

  private other(type: (typeof OTHER_TYPES)[number]): void {
    const account = this.rng.pick(this.accounts).id;
    const n = this.seq++;
    const room = `dm-${account}`;
    const payload = this.payload(type, n, room);
    const sockets = this.sim.emit(account, type, payload);
    this.ledger.record(account, type, payload, Date.now(), sockets);
  }

  private payload(type: (typeof OTHER_TYPES)[number], n: number, room: string): unknown {
    const messageID = this.recent.length > 0 ? this.rng.pick(this.recent).msg._id : `m${n}`;
    switch (type) {
      case 'room':
        return {
          _id: room,
          name: `Room ${room} rev ${n}`,
          members: ['alice'],
          memberProperties: [{ client: 'alice', lastRead: messageID }],
          lastMessage: { _id: messageID, message: `last ${n}` },
        };
      case 'lastRead':
        return { roomID: room, memberID: 'alice', messageID, seq: n };
      case 'typing':
        return {
          room,
          message: 'typing',
          sender: 'alice',
          senderInfo: { _id: 'alice', nickname: `Alice ${n}` },
        };
      case 'ai_streaming':
        return { room, sender: 'assistant', text: `token ${n} `, messageId: `ai-${Math.floor(n / 5)}` };
      case 'roomPref':
        return {
          room,
          folder: `f${n % 3}`,
          hidden: false,
          muted: n % 2 === 0,
          sticky: false,
          tags: [`t${n}`],
        };
      case 'myPrefChange':
        return { key: `pref.${n}`, data: { theme: n % 2 ? 'dark' : 'light', fontSize: 10 + (n % 8) } };
      case 'myPrefDelete':
        return `pref.${n}`;
      case 'invitation':
        return {
          _id: `inv-${n}`,
          room,
          inviter: 'alice',
          invitee: 'bot',
          createdAt: new Date().toISOString(),
        };
      case 'cancelInvitation':
        return { room: `${room}-inv-${n}` };
      case 'userDeleteMessages':
        return { room, messages: [messageID, `m${n}`], isUserDeleteAllMessagesInRoom: false };
      case 'messageDeleted':
        return n % 10 === 0
          ? { room: `${room}-${n}`, messageID: '_all' }
          : { room, messageID: `${messageID}-${n}` };
    }
  }
}
