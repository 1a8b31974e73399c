import { describe, expect, it } from 'vitest';
import type { DeliveryEvent } from '../../src/queue/job.js';
import { renderTemplate, templateProblem } from '../../src/deliver/template.js';

function event(overrides: Partial<DeliveryEvent>): DeliveryEvent {
  return { id: 'evt_x', type: 'chat message', account: 'audit-bot', receivedAt: 0, body: '{}', ...overrides };
}

describe('templates', () => {
  it('substitutes account, type and room, making every character outside A-Za-z0-9_- an underscore', () => {
    expect(renderTemplate('imkit.{account}.{type}.{room}', event({ room: 'r-1' }))).toBe(
      'imkit.audit-bot.chat_message.r-1',
    );
    // A value can add no subject token, wildcard or key separator.
    expect(renderTemplate('imkit.{account}', event({ account: 'a.b*c>d e' }))).toBe('imkit.a_b_c_d_e');
    expect(renderTemplate('{account}', event({ account: 'é😀' }))).toBe('__');
    expect(renderTemplate('{room}', event({ room: 'room:{x}' }))).toBe('room__x_');
  });

  it('uses none for the room of an event that has none', () => {
    expect(renderTemplate('x.{room}', event({ type: 'typing' }))).toBe('x.none');
    expect(renderTemplate('x.{room}', event({}))).toBe('x.none');
  });

  it('reports unknown placeholders and stray braces, and accepts the three placeholders', () => {
    expect(templateProblem('imkit.{account}.{type}.{room}')).toBeUndefined();
    expect(templateProblem('imkit.{acount}')).toMatch(/unknown placeholder \{acount\}/);
    expect(templateProblem('imkit.{account')).toMatch(/not part of a placeholder/);
    expect(templateProblem('imkit.}')).toMatch(/not part of a placeholder/);
  });
});
