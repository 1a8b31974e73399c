import { randomBytes } from 'node:crypto';
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AccountConfig, BridgeConfig } from '../../src/config/schema.js';
import { CodecLoadError } from '../../src/errors.js';
import { createDecoder, type Decoder, type DecodeResult } from '../../src/decode/decoder.js';
import { maxRawBytes } from '../../src/decode/limits.js';
import { restoreRaw, storeRaw } from '../../src/decode/raw.js';

const limits: BridgeConfig['limits'] = { maxPayloadBytes: 64 * 1024, maxJsonDepth: 64, bufferEvents: 100 };

function account(encoding: 'none' | 'base64' | 'custom', codec?: string): AccountConfig {
  return {
    id: 'bot',
    token: 't',
    deviceId: 'imkit-bridge-bot',
    encoding,
    codec,
    events: ['*'],
    heartbeatTimeout: 30_000,
    catchUp: true,
  } as AccountConfig;
}

const b64 = (value: unknown) => Buffer.from(JSON.stringify(value), 'utf8').toString('base64');

/** Awkward but valid text: what real chat traffic contains and naive codecs mangle. */
const AWKWARD = [
  'plain',
  'emoji 👩‍👩‍👧‍👦 🇹🇼 😀',
  'quotes " \' ` “ ”',
  'backslashes \\ \\\\ \\n \\u0000',
  'new\nlines\r\nand\ttabs',
  'separators \u2028 and \u2029',
  'RTL \u202e שלום مرحبا',
  'NUL \u0000 inside',
  '',
  '{"looks":"like json"}',
  'BOM \ufeff mid',
];

function message(i: number): Record<string, unknown> {
  const text = AWKWARD[i % AWKWARD.length]!;
  return {
    _id: `m${i}`,
    room: `room-${i % 7}`,
    message: i % 5 === 0 ? { text, nested: [text, { deep: text }] } : text,
    messageType: 'text',
    sender: { _id: 'u1', nickname: text, isRobot: false },
    messageTimeMS: 1_700_000_000_000 + i,
    mentions: [],
    extra: i % 3 === 0 ? null : { n: i, f: i / 7, neg: -i, big: 2 ** 53 - 1, t: true },
  };
}

function expectFail(result: DecodeResult, reason: RegExp): Buffer {
  expect(result.ok).toBe(false);
  if (result.ok) throw new Error('unreachable');
  expect(result.reason).toMatch(reason);
  return result.raw;
}

describe('base64 decoder', () => {
  let decoder: Decoder;
  beforeAll(async () => {
    decoder = await createDecoder(account('base64'), limits);
  });

  it('decodes hundreds of awkward messages exactly', () => {
    for (let i = 0; i < 400; i++) {
      const value = message(i);
      expect(decoder.decode(b64(value))).toEqual({ ok: true, data: value });
    }
  });

  it('relays a bare (non-JSON) string such as the myPrefDelete key, unparsed', () => {
    for (const key of ['theme', 'notify.sound', '123', 'true', 'null', 'emoji 😀', '']) {
      expect(decoder.decode(Buffer.from(key).toString('base64'))).toEqual({ ok: true, data: key });
    }
    expect(decoder.decode(b64('a "quoted" key'))).toEqual({ ok: true, data: 'a "quoted" key' });
  });

  it('accepts a plain object (server ignored conf) and rejects other non-strings', () => {
    const value = message(3);
    expect(decoder.decode(value)).toEqual({ ok: true, data: value });
    expectFail(decoder.decode([1, 2]), /expected a base64 string, got an array/);
    expectFail(decoder.decode(42), /got number/);
    expectFail(decoder.decode(true), /got boolean/);
    expectFail(decoder.decode(null), /got null/);
    expectFail(decoder.decode(undefined), /got undefined/);
    expect(expectFail(decoder.decode(Buffer.from([1, 2, 3])), /got binary/)).toEqual(Buffer.from([1, 2, 3]));
    expect(expectFail(decoder.decode(new Uint8Array([9]).buffer), /got binary/)).toEqual(Buffer.from([9]));
  });

  it('rejects malformed payloads with a reason and keeps the raw bytes', () => {
    const cases: [unknown, RegExp][] = [
      ['not base64!', /invalid base64/],
      ['abc', /invalid base64/],
      ['QR==', /invalid base64/], // non-zero padding bits: not canonical
      ['eyJhIjoidGV4dCJ9eyJhIjoidGV4dCJ9eyJhIjoidGV4dCJ9eQ==', /invalid JSON/], // canonical padding, long payload
      ['eyJhIjoidGV4dCJ9eyJhIjoidGV4dCJ9eyJhIjoidGV4dCJ9eR==', /invalid base64/], // non-canonical in the last quantum only
      ['eyJh-_==', /invalid base64/], // URL-safe alphabet
      ['eyJh IjoxfQ==', /invalid base64/], // whitespace, which Node's decoder skips
      ['eyJhIjoxfQ==eyJhIjoxfQ==', /invalid base64/], // padding inside
      ['eyJhIjoxfQ', /invalid base64/], // padding missing
      [Buffer.from('{"a":').toString('base64'), /invalid JSON/],
      [Buffer.from('[1,2').toString('base64'), /invalid JSON/],
      [Buffer.from('"unterminated').toString('base64'), /invalid JSON/],
      [Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]).toString('base64'), /invalid UTF-8/],
      [Buffer.from([0xc3]).toString('base64'), /invalid UTF-8/],
      [Buffer.from('{"x":'.repeat(100)).toString('base64'), /nesting too deep/],
    ];
    for (const [raw, reason] of cases) {
      const bytes = expectFail(decoder.decode(raw), reason);
      expect(bytes).toEqual(Buffer.from(raw as string, 'utf8'));
    }
  });

  it('limits nesting exactly at maxJsonDepth, whatever the brackets inside strings', () => {
    const nested = (depth: number) => '['.repeat(depth) + ']'.repeat(depth);
    const b64 = (text: string) => Buffer.from(text).toString('base64');
    expect(decoder.decode(b64(nested(limits.maxJsonDepth)))).toMatchObject({ ok: true });
    expectFail(decoder.decode(b64(nested(limits.maxJsonDepth + 1))), /nesting too deep/);
    // More opening brackets than the limit, all but one inside a string: one level deep.
    const bracketsInText = JSON.stringify({ text: '{['.repeat(limits.maxJsonDepth) });
    expect(decoder.decode(b64(bracketsInText))).toEqual({ ok: true, data: JSON.parse(bracketsInText) });
    // Deep nesting whose brackets are spread between long stretches of text.
    let spread = '"end"';
    for (let i = 0; i <= limits.maxJsonDepth; i++) spread = `{"pad":"${'x'.repeat(20)}","next":${spread}}`;
    expectFail(decoder.decode(b64(spread)), /nesting too deep/);
  });

  it('measures size on the decoded bytes, not on the base64 text', () => {
    const json = (bytes: number) => JSON.stringify({ text: 'a'.repeat(bytes - 11) });
    // Base64 is a third longer than what it carries: a payload at the limit must still pass.
    const atLimit = json(limits.maxPayloadBytes);
    expect(Buffer.byteLength(atLimit)).toBe(limits.maxPayloadBytes);
    expect(decoder.decode(Buffer.from(atLimit).toString('base64'))).toEqual({
      ok: true,
      data: JSON.parse(atLimit),
    });
    expectFail(decoder.decode(Buffer.from(json(limits.maxPayloadBytes + 1)).toString('base64')), /too large/);
  });

  it('rejects oversize payloads before decoding and 100k-deep nesting without a stack overflow', async () => {
    // Far past the limit: refused on its length, before the alphabet is even scanned.
    const huge = 'A'.repeat(maxRawBytes(limits) + 4);
    expectFail(decoder.decode(huge), /too large/);
    const roomy = await createDecoder(account('base64'), { ...limits, maxPayloadBytes: 1_000_000 });
    const deep = Buffer.from('['.repeat(100_000) + ']'.repeat(100_000)).toString('base64');
    expectFail(roomy.decode(deep), /nesting too deep/);
    // Exactly at the limit is fine; brackets inside strings do not count towards depth.
    const atLimit = '['.repeat(limits.maxJsonDepth) + ']'.repeat(limits.maxJsonDepth);
    expect(roomy.decode(Buffer.from(atLimit).toString('base64')).ok).toBe(true);
    const text = { s: '[[[[[[[[[['.repeat(20) + '\\"[[[' };
    expect(roomy.decode(b64(text))).toEqual({ ok: true, data: text });
  });

  it('keeps __proto__/constructor/prototype keys as own data and pollutes nothing', () => {
    const text = '{"__proto__":{"polluted":1},"constructor":{"prototype":{"polluted":2}},"prototype":3}';
    const result = decoder.decode(Buffer.from(text).toString('base64'));
    expect(result.ok).toBe(true);
    const data = (result as { data: Record<string, unknown> }).data;
    expect(Object.getPrototypeOf(data)).toBe(Object.prototype);
    expect(Object.keys(data)).toEqual(['__proto__', 'constructor', 'prototype']);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect((Object.prototype as Record<string, unknown>).polluted).toBeUndefined();
    // Relayed unchanged: the body carries them as data.
    expect(JSON.stringify(data)).toBe(text);
  });
});

describe('none decoder', () => {
  let decoder: Decoder;
  beforeAll(async () => {
    decoder = await createDecoder(account('none'), limits);
  });

  it('passes JSON values through unchanged', () => {
    for (let i = 0; i < 300; i++) {
      // As Socket.IO would hand it over: parsed from JSON text.
      const value = JSON.parse(JSON.stringify(message(i))) as unknown;
      const result = decoder.decode(value);
      expect(result).toEqual({ ok: true, data: message(i) });
      expect((result as { data: unknown }).data).toBe(value);
    }
    for (const value of ['bare string', 0, -1.5, true, false, null, [1, 'two', { three: 3 }], {}]) {
      expect(decoder.decode(value)).toEqual({ ok: true, data: value });
    }
  });

  it('does not parse strings', () => {
    expect(decoder.decode('{"a":1}')).toEqual({ ok: true, data: '{"a":1}' });
  });

  it('rejects undefined, binary, non-JSON values, deep and oversize objects', () => {
    expectFail(decoder.decode(undefined), /no payload/);
    expectFail(decoder.decode(Buffer.from('x')), /binary/);
    expectFail(decoder.decode(new ArrayBuffer(4)), /binary/);
    expectFail(decoder.decode({ file: Buffer.from('x') }), /binary or non-plain/);
    expectFail(decoder.decode({ when: new Date() }), /non-plain/);
    expectFail(decoder.decode({ n: Number.NaN }), /non-finite/);
    expectFail(decoder.decode({ n: 1n }), /unsupported value type bigint/);
    let deep: unknown = {};
    for (let i = 0; i < 100_000; i++) deep = { d: deep };
    expectFail(decoder.decode(deep), /nesting too deep/);
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expectFail(decoder.decode(cyclic), /nesting too deep/);
    expectFail(decoder.decode({ s: 'x'.repeat(limits.maxPayloadBytes) }), /too large/);
    expectFail(decoder.decode('x'.repeat(limits.maxPayloadBytes + 1)), /too large/);
    // Multi-byte text is measured in bytes.
    expectFail(decoder.decode('😀'.repeat(limits.maxPayloadBytes / 4 + 1)), /too large/);
  });

  it('keeps __proto__ keys from a parsed payload as own data', () => {
    const value = JSON.parse('{"__proto__":{"polluted":true},"a":1}') as unknown;
    expect(decoder.decode(value)).toEqual({ ok: true, data: value });
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});

describe('custom codec', () => {
  const key = randomBytes(32).toString('base64');
  const dir = mkdtempSync(join(tmpdir(), 'imkit-codec-'));
  let encode: (value: unknown) => string;
  let decoder: Decoder;

  beforeAll(async () => {
    process.env.IMKIT_CODEC_KEY = key;
    decoder = await createDecoder(account('custom', 'examples/codecs/aes-gcm.mjs'), limits);
    ({ encode } = await import('../../examples/codecs/aes-gcm.mjs'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('decodes the example AES-256-GCM codec exactly', () => {
    for (let i = 0; i < 300; i++) {
      expect(decoder.decode(encode(message(i)))).toEqual({ ok: true, data: message(i) });
    }
    expect(decoder.decode(encode('bare key'))).toEqual({ ok: true, data: 'bare key' });
  });

  it('quarantines what does not authenticate, without leaking payload text into the reason', () => {
    const good = Buffer.from(encode({ secret: 'hunter2' }), 'base64');
    good.writeUInt8(good.readUInt8(good.length - 1) ^ 1, good.length - 1);
    const tampered = good.toString('base64');
    const raw = expectFail(decoder.decode(tampered), /^codec failed/);
    expect(raw.toString()).toBe(tampered);
    expectFail(decoder.decode('short'), /codec failed \(RangeError\)/);
    expectFail(decoder.decode(42), /codec failed \(TypeError\)/);
    expectFail(decoder.decode(undefined), /no payload/);
  });

  it('applies the same safety checks to what a codec returns', async () => {
    const path = join(dir, 'weird.mjs');
    writeFileSync(
      path,
      `export function decode(raw) {
         if (raw === 'deep') { let v = {}; for (let i = 0; i < 1000; i++) v = [v]; return v; }
         if (raw === 'promise') return Promise.resolve(1);
         if (raw === 'undefined') return undefined;
         if (raw === 'date') return { d: new Date(0) };
         if (raw === 'throw') throw 'a string';
         return { raw: typeof raw === 'string' ? raw : 'binary:' + raw.byteLength };
       }`,
    );
    for (const spec of [path, pathToFileURL(path).href, relative(process.cwd(), path)]) {
      const d = await createDecoder(account('custom', spec), limits);
      expect(d.decode('hello')).toEqual({ ok: true, data: { raw: 'hello' } });
      expect(d.decode(Buffer.from('abc'))).toEqual({ ok: true, data: { raw: 'binary:3' } });
      expectFail(d.decode('deep'), /nesting too deep/);
      expectFail(d.decode('promise'), /synchronous/);
      expectFail(d.decode('undefined'), /returned undefined/);
      expectFail(d.decode('date'), /non-plain/);
      expectFail(d.decode('throw'), /codec failed \(string\)/);
      expectFail(d.decode('x'.repeat(limits.maxPayloadBytes + 1)), /too large/);
    }
  });

  it('fails at startup, with a coded error, when the codec cannot be loaded', async () => {
    await expect(createDecoder(account('custom', join(dir, 'missing.mjs')), limits)).rejects.toMatchObject({
      code: 'BRIDGE_ERR_CODEC_LOAD',
    });
    const noDecode = join(dir, 'no-decode.mjs');
    writeFileSync(noDecode, 'export const encode = () => "";');
    await expect(createDecoder(account('custom', noDecode), limits)).rejects.toBeInstanceOf(CodecLoadError);
  });
});

describe('what a failure keeps', () => {
  it('carries the ids that can be read safely and nothing else of the payload', async () => {
    const base64 = await createDecoder(account('base64'), limits);
    const deep = '['.repeat(100) + ']'.repeat(100);
    const text = `{"_id":"m1","room":"r1","message":${deep},"sender":{"_id":"alice","nickname":"A"},"messageID":${'7'},"roomID":"${'x'.repeat(200)}"}`;
    const failure = base64.decode(Buffer.from(text).toString('base64'));
    expect(failure).toMatchObject({ ok: false, reason: 'nesting too deep', rawType: 'string' });
    expect((failure as { ids: unknown }).ids).toEqual({ _id: 'm1', room: 'r1', sender: { _id: 'alice' } });
    // Not JSON, or too large to look at: no ids.
    expect(base64.decode(Buffer.from('{"_id":"m1",').toString('base64'))).toMatchObject({ ids: {} });

    const plain = await createDecoder(account('none'), limits);
    let value: unknown = {};
    for (let i = 0; i < 100; i++) value = { d: value };
    const typing = plain.decode({ room: 'r2', sender: 'bob', memberID: 'bob', extra: value });
    expect(typing).toMatchObject({ ok: false, ids: { room: 'r2', sender: 'bob', memberID: 'bob' } });
  });

  it('keeps a payload nested far past what JSON.stringify survives as its exact JSON text', async () => {
    const plain = await createDecoder(account('none'), limits);
    const depth = 100_000;
    let deep: unknown = {};
    for (let i = 0; i < depth; i++) deep = { d: deep };
    const failure = plain.decode(deep);
    expect(failure).toMatchObject({ ok: false, reason: 'nesting too deep', rawType: 'json' });
    const raw = (failure as { raw: Buffer }).raw.toString();
    expect(raw).toBe(`${'{"d":'.repeat(depth)}{}${'}'.repeat(depth)}`);
    // And it comes back as the value the socket delivered.
    const restored = restoreRaw(Buffer.from(raw), 'json');
    expect(restored.ok && plain.decode(restored.raw)).toMatchObject({
      ok: false,
      reason: 'nesting too deep',
    });
  });

  it('marks values JSON cannot carry as not replayable', async () => {
    const plain = await createDecoder(account('none'), limits);
    const failure = plain.decode({ file: Buffer.from('x') });
    expect(failure).toMatchObject({ ok: false, rawType: 'lossy' });
    expect(restoreRaw((failure as { raw: Buffer }).raw, 'lossy')).toMatchObject({ ok: false });
    for (const raw of ['text', Buffer.from([1, 2]), [1, { a: 'b' }], undefined]) {
      const stored = storeRaw(raw);
      expect(restoreRaw(stored.bytes, stored.type)).toEqual({ ok: true, raw });
    }
  });
});
