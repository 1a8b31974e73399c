import { describe, expect, it } from 'vitest';
import { eventId } from '../../src/route/event-id.js';

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
});
