/**
 * Safety checks shared by every encoding. Both are iterative so a hostile 100k-deep payload costs
 * a linear scan, never a stack overflow.
 */

export interface PayloadLimits {
  /** Bound on the decoded payload: its bytes (base64, text) or the size of the value (codec, objects). */
  readonly maxPayloadBytes: number;
  readonly maxJsonDepth: number;
}

/** Room for a custom codec's framing around the encoded payload (IV, tag, envelope). */
const RAW_FRAMING_BYTES = 64 * 1024;

/**
 * Largest raw payload worth decoding: the base64 form of `maxPayloadBytes` plus a codec's framing.
 * Checked before anything is decoded, so a huge raw payload costs one length comparison; the
 * limit that decides is the one on the decoded payload.
 */
export function maxRawBytes(limits: PayloadLimits): number {
  return Math.ceil(limits.maxPayloadBytes / 3) * 4 + RAW_FRAMING_BYTES;
}

const OPEN_BRACE = 0x7b;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACE = 0x7d;
const CLOSE_BRACKET = 0x5d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/**
 * Deepest container nesting in JSON text, stopping as soon as `limit` is exceeded. Brackets inside
 * strings do not count. Run before `JSON.parse` so deep text is rejected without being parsed.
 * Text with at most `limit` opening brackets cannot be deeper, which a few native `indexOf` calls
 * show without the character-by-character scan (every event pays this check).
 */
export function exceedsJsonDepth(text: string, limit: number): boolean {
  if (!hasMoreOpenings(text, limit)) return false;
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === BACKSLASH) i++;
      else if (c === QUOTE) inString = false;
    } else if (c === QUOTE) {
      inString = true;
    } else if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      if (++depth > limit) return true;
    } else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
      depth--;
    }
  }
  return false;
}

/** Whether `text` holds more than `limit` opening brackets, strings included (an upper bound on depth). */
function hasMoreOpenings(text: string, limit: number): boolean {
  if (text.length <= limit) return false;
  let count = 0;
  for (const bracket of ['{', '[']) {
    for (let i = text.indexOf(bracket); i !== -1; i = text.indexOf(bracket, i + 1)) {
      if (++count > limit) return true;
    }
  }
  return false;
}

/**
 * Checks an already-built value (Socket.IO parsed it, or a custom codec returned it): only JSON
 * types, at most `maxJsonDepth` deep, and a size estimate within `maxPayloadBytes`. The estimate
 * counts UTF-16 code units of strings and keys plus one byte per value; it never exceeds the JSON
 * text size, so nothing legitimate is rejected, and it costs no serialisation on the hot path.
 * Returns a short reason, or undefined when the value is acceptable.
 */
export function checkValue(value: unknown, limits: PayloadLimits): string | undefined {
  const stack: { value: unknown; depth: number }[] = [{ value, depth: 0 }];
  let size = 0;
  while (stack.length > 0) {
    const item = stack.pop()!;
    const v = item.value;
    size += 1;
    // undefined members vanish (objects) or become null (arrays) in the JSON body, as JSON.stringify does.
    if (v === null || v === undefined || typeof v === 'boolean') continue;
    if (typeof v === 'number') {
      if (!Number.isFinite(v)) return 'non-finite number';
      continue;
    }
    if (typeof v === 'string') {
      size += v.length;
      if (size > limits.maxPayloadBytes) return 'payload too large';
      continue;
    }
    if (typeof v !== 'object') return `unsupported value type ${typeof v}`;
    const depth = item.depth + 1;
    if (depth > limits.maxJsonDepth) return 'nesting too deep';
    if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push({ value: v[i], depth });
      size += v.length;
    } else {
      const proto: unknown = Object.getPrototypeOf(v);
      if (proto !== Object.prototype && proto !== null) return 'binary or non-plain object in payload';
      for (const key of Object.keys(v)) {
        size += key.length + 1;
        stack.push({ value: (v as Record<string, unknown>)[key], depth });
      }
    }
    if (size > limits.maxPayloadBytes) return 'payload too large';
  }
  return undefined;
}
