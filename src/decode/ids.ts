/**
 * Identifiers read from a payload that could not be decoded, for the `bridge.quarantined` event:
 * only top-level ids (and the sender's), only strings of id-like length, in the payload's own
 * shape. Nothing else of the payload is copied: it may be the attack.
 */
export interface QuarantineIds {
  readonly _id?: string;
  readonly id?: string;
  readonly room?: string;
  readonly roomID?: string;
  readonly messageID?: string;
  readonly messageId?: string;
  readonly memberID?: string;
  /** A sender id (typing sends a string) or `{ _id }` of a sender object (chat message). */
  readonly sender?: string | { readonly _id: string };
}

const ID_KEYS = ['_id', 'id', 'room', 'roomID', 'messageID', 'messageId', 'memberID'] as const;
/** IMKIT ids are short (24 hex characters, client ids, UUIDs); longer strings are content, not ids. */
const MAX_ID_LENGTH = 128;

/** The ids of an already-built value (an object Socket.IO parsed, or what a codec returned). */
export function safeIds(value: unknown): QuarantineIds {
  if (!isRecord(value)) return {};
  const ids: Record<string, unknown> = {};
  for (const key of ID_KEYS) {
    const id = own(value, key);
    if (isId(id)) ids[key] = id;
  }
  const sender = own(value, 'sender');
  if (isId(sender)) ids.sender = sender;
  else if (isRecord(sender) && isId(own(sender, '_id'))) ids.sender = { _id: own(sender, '_id') };
  return ids as QuarantineIds;
}

/**
 * The ids of decoded JSON text that failed a limit. V8's JSON.parse does not recurse, so even
 * text nested past the depth limit parses safely; only the top two levels are then read.
 */
export function idsOfJsonText(text: string): QuarantineIds {
  try {
    return safeIds(JSON.parse(text));
  } catch {
    return {};
  }
}

function own(record: Record<string, unknown>, key: string): unknown {
  return Object.hasOwn(record, key) ? record[key] : undefined;
}

function isId(value: unknown): value is string {
  return typeof value === 'string' && value.length > 0 && value.length <= MAX_ID_LENGTH;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}
