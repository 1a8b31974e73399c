import type { AccountConfig, BridgeConfig } from '../config/schema.js';
import { loadCodec, type Codec } from './codec.js';
import { idsOfJsonText, safeIds, type QuarantineIds } from './ids.js';
import { checkValue, exceedsJsonDepth, maxRawBytes, type PayloadLimits } from './limits.js';
import { storeRaw, type RawType } from './raw.js';

export interface DecodeFailure {
  readonly ok: false;
  /** Short, and never payload content. */
  readonly reason: string;
  /** The bytes kept in quarantine (src/decode/raw.ts). */
  readonly raw: Buffer;
  readonly rawType: RawType;
  /** Ids that could be read safely, for `bridge.quarantined`. */
  readonly ids: QuarantineIds;
}

export type DecodeResult = { ok: true; data: unknown } | DecodeFailure;

/** Turns one raw Socket.IO payload into the data the bridge relays. Never throws. */
export interface Decoder {
  decode(raw: unknown): DecodeResult;
}

// ignoreBOM keeps a leading U+FEFF as data instead of silently stripping it: "unchanged" means unchanged.
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

export async function createDecoder(
  account: AccountConfig,
  limits: BridgeConfig['limits'],
): Promise<Decoder> {
  const bounds: PayloadLimits = {
    maxPayloadBytes: limits.maxPayloadBytes,
    maxJsonDepth: limits.maxJsonDepth,
  };
  switch (account.encoding) {
    case 'none':
      return guarded((raw) => decodePlain(raw, bounds));
    case 'base64':
      return guarded((raw) => decodeBase64(raw, bounds));
    case 'custom': {
      // The schema guarantees codec is set for custom; loadCodec rejects a missing/invalid module.
      const codec = await loadCodec(account.codec ?? '');
      return guarded((raw) => decodeCustom(codec, raw, bounds));
    }
  }
}

/** The "never throws" guarantee in one place: any surprise becomes a quarantine entry. */
function guarded(decode: (raw: unknown) => DecodeResult): Decoder {
  return {
    decode(raw) {
      try {
        return decode(raw);
      } catch (err) {
        return fail(`decoder error (${errorMessage(err)})`, raw);
      }
    },
  };
}

function decodePlain(raw: unknown, limits: PayloadLimits): DecodeResult {
  const early = rejectUnusable(raw, limits);
  if (early) return early;
  const problem = checkValue(raw, limits);
  return problem ? fail(problem, raw, safeIds(raw)) : { ok: true, data: raw };
}

function decodeBase64(raw: unknown, limits: PayloadLimits): DecodeResult {
  if (typeof raw !== 'string') {
    // A server that ignored `conf` sends plain objects (IMKIT's default). A base64 payload is always
    // a string, so a plain object cannot be a misread base64 one; relaying it beats quarantining
    // every event of a misconfigured server. Anything else is not something IMKIT sends: quarantine.
    if (isPlainObject(raw)) return decodePlain(raw, limits);
    return fail(`expected a base64 string, got ${describe(raw)}`, raw);
  }
  // The limit is on the decoded bytes; this cheaper bound keeps a huge string from being scanned.
  if (raw.length > maxRawBytes(limits)) return fail('payload too large', raw);
  // Node's decoder is lenient (it skips stray characters and whitespace, takes the URL-safe alphabet,
  // ignores non-zero padding bits); strict means the canonical form only, which is exactly the text
  // that re-encoding the bytes gives back. Cheaper per event than a regular expression over the text.
  const bytes = Buffer.from(raw, 'base64');
  if (bytes.toString('base64') !== raw) return fail('invalid base64', raw);
  if (bytes.length > limits.maxPayloadBytes) return fail('payload too large', raw);
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    return fail('invalid UTF-8', raw);
  }
  return parseText(text, raw, limits);
}

function decodeCustom(codec: Codec, raw: unknown, limits: PayloadLimits): DecodeResult {
  if (raw === undefined) return fail('no payload', raw);
  // Binary is the codec's business here (an encrypted transport may well send it). The limit is on
  // what the codec returns; this cheaper bound on its input keeps memory bounded.
  const rawLimit = maxRawBytes(limits);
  if (isBinary(raw) && (raw as ArrayBuffer | ArrayBufferView).byteLength > rawLimit) {
    return fail('payload too large', raw);
  }
  if (typeof raw === 'string' && (raw.length > rawLimit || Buffer.byteLength(raw) > rawLimit))
    return fail('payload too large', raw);
  let data: unknown;
  try {
    data = codec.decode(raw);
  } catch (err) {
    return fail(`codec failed (${errorMessage(err)})`, raw);
  }
  if (data === undefined) return fail('codec returned undefined', raw);
  if (typeof (data as { then?: unknown } | null)?.then === 'function') {
    return fail('codec returned a promise; decode must be synchronous', raw);
  }
  const problem = checkValue(data, limits);
  return problem ? fail(problem, raw, safeIds(data)) : { ok: true, data };
}

/**
 * Decoded base64 text: JSON when it looks like JSON (object, array or string), else a bare string
 * (IMKIT's `myPrefDelete` sends its key that way). Bare text is never parsed, so a key such as
 * `123` or `true` stays a string; text that starts like JSON but does not parse is broken, not bare.
 */
function parseText(text: string, raw: unknown, limits: PayloadLimits): DecodeResult {
  const first = firstNonSpace(text);
  if (first !== '{' && first !== '[' && first !== '"') return { ok: true, data: text };
  if (exceedsJsonDepth(text, limits.maxJsonDepth)) return fail('nesting too deep', raw, idsOfJsonText(text));
  try {
    return { ok: true, data: JSON.parse(text) as unknown };
  } catch {
    return fail('invalid JSON', raw);
  }
}

/** Payload shapes no encoding accepts, and the size limit for strings and binary. */
function rejectUnusable(raw: unknown, limits: PayloadLimits): DecodeResult | undefined {
  if (raw === undefined) return fail('no payload', raw);
  if (typeof raw === 'string') {
    if (raw.length > limits.maxPayloadBytes || Buffer.byteLength(raw) > limits.maxPayloadBytes) {
      return fail('payload too large', raw);
    }
    return undefined;
  }
  // Socket.IO delivers binary attachments as Buffer/ArrayBuffer; IMKIT never sends them, and JSON
  // webhooks cannot carry them unchanged.
  if (isBinary(raw)) return fail('binary payload', raw);
  return undefined;
}

function fail(reason: string, raw: unknown, ids: QuarantineIds = {}): DecodeFailure {
  const stored = storeRaw(raw);
  return { ok: false, reason, raw: stored.bytes, rawType: stored.type, ids };
}

function isBinary(raw: unknown): boolean {
  return raw instanceof ArrayBuffer || ArrayBuffer.isView(raw);
}

function isPlainObject(raw: unknown): raw is Record<string, unknown> {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return false;
  const proto: unknown = Object.getPrototypeOf(raw);
  return proto === Object.prototype || proto === null;
}

function firstNonSpace(text: string): string | undefined {
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c !== ' ' && c !== '\t' && c !== '\n' && c !== '\r') return c;
  }
  return undefined;
}

function describe(raw: unknown): string {
  if (raw === null) return 'null';
  if (Array.isArray(raw)) return 'an array';
  if (isBinary(raw)) return 'binary';
  return typeof raw;
}

/** Only the error's class: messages (JSON.parse's, a codec's) may quote payload content. */
function errorMessage(err: unknown): string {
  return err instanceof Error ? err.name : typeof err;
}
