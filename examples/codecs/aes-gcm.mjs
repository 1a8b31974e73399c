/**
 * Example `encoding: custom` codec for imkit-bridge: AES-256-GCM.
 *
 * Key: env IMKIT_CODEC_KEY, base64 of exactly 32 random bytes
 *   (generate one with `node -e "console.log(crypto.randomBytes(32).toString('base64'))"`).
 *   It is read when the module loads, so a missing or malformed key stops the bridge at startup
 *   instead of quarantining every event.
 * Wire format: one string, base64( iv (12 bytes) | auth tag (16 bytes) | ciphertext ), where the
 *   plaintext is the UTF-8 JSON of the event payload.
 * Exports:
 *   encode(value): string   what an IMKIT server using this scheme sends (used by test simulators)
 *   decode(raw): unknown    what the bridge calls per event; throws on anything that does not
 *                           authenticate, and the bridge quarantines the payload.
 *
 * Use it with `encoding: custom` and `codec: ./examples/codecs/aes-gcm.mjs` (relative to the cwd).
 */
import { Buffer } from 'node:buffer';
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';

const IV_BYTES = 12;
const TAG_BYTES = 16;

const key = readKey();

function readKey() {
  const encoded = process.env.IMKIT_CODEC_KEY;
  if (!encoded) throw new Error('IMKIT_CODEC_KEY is not set (base64 of 32 bytes)');
  const bytes = Buffer.from(encoded, 'base64');
  if (bytes.length !== 32) throw new Error('IMKIT_CODEC_KEY must be base64 of exactly 32 bytes');
  return bytes;
}

export function encode(value) {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  const ciphertext = Buffer.concat([cipher.update(JSON.stringify(value), 'utf8'), cipher.final()]);
  return Buffer.concat([iv, cipher.getAuthTag(), ciphertext]).toString('base64');
}

export function decode(raw) {
  if (typeof raw !== 'string') throw new TypeError('expected a base64 string');
  const bytes = Buffer.from(raw, 'base64');
  if (bytes.length < IV_BYTES + TAG_BYTES) throw new RangeError('ciphertext too short');
  const decipher = createDecipheriv('aes-256-gcm', key, bytes.subarray(0, IV_BYTES));
  decipher.setAuthTag(bytes.subarray(IV_BYTES, IV_BYTES + TAG_BYTES));
  const plaintext = Buffer.concat([decipher.update(bytes.subarray(IV_BYTES + TAG_BYTES)), decipher.final()]);
  return JSON.parse(plaintext.toString('utf8'));
}
