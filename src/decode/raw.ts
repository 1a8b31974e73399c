/**
 * How a payload that could not be decoded is kept (quarantine) and brought back (`dlq replay
 * --quarantine`): its bytes plus what kind of value they came from, so replay hands the decoder
 * the same value the socket did.
 */

/**
 * `string`: UTF-8 of a string; `binary`: bytes as received; `json`: a non-string value as JSON
 * text; `lossy`: a value JSON cannot carry faithfully (binary or class instances inside), kept as
 * JSON text for inspection but not replayable; `none`: no payload at all.
 */
export type RawType = 'string' | 'binary' | 'json' | 'lossy' | 'none';

export const RAW_TYPES: readonly RawType[] = ['string', 'binary', 'json', 'lossy', 'none'];

export interface RawPayload {
  readonly bytes: Buffer;
  readonly type: RawType;
}

export function storeRaw(raw: unknown): RawPayload {
  if (typeof raw === 'string') return { bytes: Buffer.from(raw, 'utf8'), type: 'string' };
  if (Buffer.isBuffer(raw)) return { bytes: raw, type: 'binary' };
  if (raw instanceof ArrayBuffer) return { bytes: Buffer.from(raw), type: 'binary' };
  if (ArrayBuffer.isView(raw)) {
    return { bytes: Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength), type: 'binary' };
  }
  if (raw === undefined) return { bytes: Buffer.alloc(0), type: 'none' };
  const { text, faithful } = jsonText(raw);
  return { bytes: Buffer.from(text, 'utf8'), type: faithful ? 'json' : 'lossy' };
}

export type Restored =
  { readonly ok: true; readonly raw: unknown } | { readonly ok: false; readonly reason: string };

/**
 * The value the socket delivered. Entries written before `rawType` existed are read as a string
 * unless their bytes are a JSON object or array (only a non-string payload was stored that way).
 */
export function restoreRaw(bytes: Buffer, type: RawType | undefined): Restored {
  switch (type) {
    case 'string':
      return { ok: true, raw: bytes.toString('utf8') };
    case 'binary':
      return { ok: true, raw: bytes };
    case 'json':
      return { ok: true, raw: JSON.parse(bytes.toString('utf8')) as unknown };
    case 'none':
      return { ok: true, raw: undefined };
    case 'lossy':
      return { ok: false, reason: 'not replayable: the payload held values JSON cannot carry' };
    case undefined: {
      const text = bytes.toString('utf8');
      const first = text.trimStart()[0];
      if (first !== '{' && first !== '[') return { ok: true, raw: text };
      try {
        return { ok: true, raw: JSON.parse(text) as unknown };
      } catch {
        return { ok: true, raw: text };
      }
    }
  }
}

/**
 * JSON text of any value without recursion: a hostile payload is as deep as the socket allowed,
 * far past what `JSON.stringify` survives. Output equals `JSON.stringify` for JSON values;
 * `faithful` is false when something had to be converted (toJSON, non-finite numbers, class
 * instances, functions), i.e. parsing the text back would not give the value that arrived.
 */
function jsonText(value: unknown): { text: string; faithful: boolean } {
  const out: string[] = [];
  let faithful = true;
  const stack: (unknown | Literal)[] = [value];
  const seen = new Set<object>();
  while (stack.length > 0) {
    const item = stack.pop();
    if (item instanceof Literal) {
      out.push(item.text);
      continue;
    }
    let v = item;
    if (v !== null && typeof v === 'object' && typeof (v as { toJSON?: unknown }).toJSON === 'function') {
      faithful = false;
      v = (v as { toJSON: () => unknown }).toJSON();
    }
    if (v === null || typeof v === 'boolean' || typeof v === 'string') {
      out.push(JSON.stringify(v));
    } else if (typeof v === 'number') {
      if (!Number.isFinite(v)) faithful = false;
      out.push(JSON.stringify(v));
    } else if (typeof v !== 'object') {
      // undefined, functions, symbols, bigints: what JSON.stringify would refuse or drop.
      faithful = false;
      out.push('null');
    } else if (seen.has(v)) {
      faithful = false;
      out.push('null');
    } else {
      seen.add(v);
      const proto: unknown = Object.getPrototypeOf(v);
      if (!Array.isArray(v) && proto !== Object.prototype && proto !== null) faithful = false;
      pushContainer(v, stack);
    }
  }
  return { text: out.join(''), faithful };
}

/** Text emitted as is between a container's members. */
class Literal {
  constructor(readonly text: string) {}
}

const OPEN_ARRAY = new Literal('[');
const CLOSE_ARRAY = new Literal(']');
const OPEN_OBJECT = new Literal('{');
const CLOSE_OBJECT = new Literal('}');
const COMMA = new Literal(',');

/** Pushes a container's parts in reverse, so they pop in order. */
function pushContainer(v: object, stack: unknown[]): void {
  const parts: unknown[] = [];
  if (Array.isArray(v)) {
    parts.push(OPEN_ARRAY);
    v.forEach((member: unknown, i) => {
      if (i > 0) parts.push(COMMA);
      parts.push(member === undefined ? null : member);
    });
    parts.push(CLOSE_ARRAY);
  } else {
    parts.push(OPEN_OBJECT);
    let first = true;
    for (const [key, member] of Object.entries(v)) {
      if (member === undefined || typeof member === 'function' || typeof member === 'symbol') continue;
      parts.push(new Literal(`${first ? '' : ','}${JSON.stringify(key)}:`), member);
      first = false;
    }
    parts.push(CLOSE_OBJECT);
  }
  for (let i = parts.length - 1; i >= 0; i--) stack.push(parts[i]);
}
