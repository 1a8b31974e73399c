import { describe, expect, it } from 'vitest';
import { eventIdentity } from '../../src/route/event-id.js';

const WINDOW = 5_000;
const AT = Date.parse('2026-11-25T10:00:01.000Z');

/** The id as ingest derives it: received at `receivedAt`, with a 5 s repeat window. */
function eventId(account: string, type: string, data: unknown, receivedAt = AT): string {
  return eventIdentity(account, type, data, receivedAt, WINDOW).id;
}

const ID = /^evt_[a-z2-7]{26}$/;

const socketMessage = {
  _id: '5f1a',
  room: 'r1',
  message: 'hi',
  messageType: 'text',
  sender: { _id: 'u1', nickname: 'U' },
  messageTime: '2026-11-25T10:00:00.000Z',
  messageTimeMS: Date.parse('2026-11-25T10:00:00.000Z'),
};

describe('eventId', () => {
  it('is deterministic and well-formed', () => {
    const a = eventId('bot', 'chat message', socketMessage);
    expect(a).toMatch(ID);
    // The same id as 0.1 derived: claims written before an upgrade still recognise the message.
    expect(a).toBe('evt_izveey4zcdbxzzstpjyijkzegz');
    expect(eventId('bot', 'chat message', structuredClone(socketMessage))).toBe(a);
    expect(eventId('bot', 'lastRead', { room: 'r1', at: 1 })).toMatch(ID);
    expect(eventId('bot', 'myPrefDelete', 'theme')).toMatch(ID);
  });

  it('depends on the account', () => {
    expect(eventId('bot', 'chat message', socketMessage)).not.toBe(
      eventId('other', 'chat message', socketMessage),
    );
    expect(eventId('bot', 'lastRead', { a: 1 })).not.toBe(eventId('other', 'lastRead', { a: 1 }));
  });

  it('gives an edit and a recall of one _id their own ids', () => {
    const original = eventId('bot', 'chat message', socketMessage);
    const edit = eventId('bot', 'chat message', {
      ...socketMessage,
      message: 'hi!',
      updatedAtMS: socketMessage.messageTimeMS + 5000,
    });
    const recall = eventId('bot', 'chat message', {
      ...socketMessage,
      message: '',
      messageType: 'recall',
      updatedAtMS: socketMessage.messageTimeMS + 9000,
    });
    expect(new Set([original, edit, recall]).size).toBe(3);
    // Same _id, type and time, different content: the same message seen again, not a new event.
    expect(eventId('bot', 'chat message', { ...socketMessage, reactions: [{ k: 1 }] })).toBe(original);
  });

  it('gives a message the same id whether it came from the socket or REST catch-up', () => {
    const id = eventId('bot', 'chat message', socketMessage);
    // REST shapes: `id` instead of `_id`, fields in another order, extra fields, time as ISO only.
    const rest = {
      id: '5f1a',
      messageType: 'text',
      message: 'hi',
      room: { _id: 'r1' },
      messageTimeMS: socketMessage.messageTimeMS,
      createdAtMS: 1,
    };
    expect(eventId('bot', 'chat message', rest)).toBe(id);
    const isoOnly = { id: '5f1a', messageType: 'text', messageTime: socketMessage.messageTime };
    expect(eventId('bot', 'chat message', isoOnly)).toBe(id);
  });

  it('falls back to the generic form when a chat message has no _id/id', () => {
    const a = eventId('bot', 'chat message', { messageType: 'text', messageTimeMS: 1, message: 'a' });
    const b = eventId('bot', 'chat message', { messageType: 'text', messageTimeMS: 1, message: 'b' });
    expect(a).toMatch(ID);
    expect(a).not.toBe(b);
  });

  it('is independent of key order for other events, at every depth', () => {
    const x = { room: 'r1', user: { a: 1, b: [{ y: 2, z: 3 }] }, at: 5 };
    const y = { at: 5, user: { b: [{ z: 3, y: 2 }], a: 1 }, room: 'r1' };
    expect(eventId('bot', 'lastRead', x)).toBe(eventId('bot', 'lastRead', y));
    expect(eventId('bot', 'lastRead', x)).not.toBe(eventId('bot', 'room', x));
    expect(eventId('bot', 'lastRead', { a: [1, 2] })).not.toBe(eventId('bot', 'lastRead', { a: [2, 1] }));
    expect(eventId('bot', 'lastRead', { a: '1' })).not.toBe(eventId('bot', 'lastRead', { a: 1 }));
  });

  it('uses the generic form for bridge lifecycle events', () => {
    const gap = { from: 1, to: 2, recovered: 3 };
    expect(eventId('bot', 'bridge.gap', gap)).toBe(
      eventId('bot', 'bridge.gap', { recovered: 3, to: 2, from: 1 }),
    );
    expect(eventId('bot', 'bridge.gap', gap)).not.toBe(eventId('bot', 'bridge.gap', { ...gap, to: 3 }));
  });

  it('gives a chat message with an id the same id whenever it is received, and no repeat key', () => {
    const early = eventIdentity('bot', 'chat message', socketMessage, AT, WINDOW);
    const late = eventIdentity('bot', 'chat message', socketMessage, AT + 60 * 60_000, WINDOW);
    expect(late).toEqual(early);
    expect(early.repeatKey).toBeUndefined();
  });

  it('gives other events one id per repeat-window slot, and one repeat key for every repeat', () => {
    const typing = { room: 'r1', message: 'typing', sender: 'alice' };
    const slotStart = Math.floor(AT / WINDOW) * WINDOW;
    const first = eventIdentity('bot', 'typing', typing, slotStart, WINDOW);
    const sameSlot = eventIdentity(
      'bot',
      'typing',
      { sender: 'alice', message: 'typing', room: 'r1' },
      slotStart + WINDOW - 1,
      WINDOW,
    );
    const nextSlot = eventIdentity('bot', 'typing', typing, slotStart + WINDOW, WINDOW);
    expect(first.id).toMatch(ID);
    expect(sameSlot.id).toBe(first.id);
    expect(nextSlot.id).not.toBe(first.id);
    expect(first.repeatKey).toMatch(/^[a-z2-7]{26}$/);
    expect(new Set([first.repeatKey, sameSlot.repeatKey, nextSlot.repeatKey]).size).toBe(1);
    // A minute later: a new event, recognisably the same content.
    const later = eventIdentity('bot', 'typing', typing, AT + 60_000, WINDOW);
    expect(later.id).not.toBe(first.id);
    expect(later.repeatKey).toBe(first.repeatKey);
  });

  it('keeps repeat keys apart by account, type and content', () => {
    const key = (account: string, type: string, data: unknown) =>
      eventIdentity(account, type, data, AT, WINDOW).repeatKey;
    const base = key('bot', 'lastRead', { a: 1 });
    expect(key('other', 'lastRead', { a: 1 })).not.toBe(base);
    expect(key('bot', 'typing', { a: 1 })).not.toBe(base);
    expect(key('bot', 'lastRead', { a: 2 })).not.toBe(base);
    // The repeat key is not the id of any occurrence.
    expect(`evt_${base}`).not.toBe(eventId('bot', 'lastRead', { a: 1 }));
  });

  it('treats a chat message without _id/id and bridge lifecycle events as content-identified', () => {
    const noId = { messageType: 'text', messageTimeMS: 1, message: 'a' };
    expect(eventIdentity('bot', 'chat message', noId, AT, WINDOW).repeatKey).toBeDefined();
    expect(eventId('bot', 'chat message', noId)).not.toBe(eventId('bot', 'chat message', noId, AT + WINDOW));
    const gap = { from: 1, to: 2 };
    expect(eventIdentity('bot', 'bridge.gap', gap, AT, WINDOW).repeatKey).toBeDefined();
    expect(eventId('bot', 'bridge.gap', gap)).not.toBe(eventId('bot', 'bridge.gap', gap, AT + WINDOW));
  });
});
