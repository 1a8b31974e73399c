/** Types for aes-gcm.mjs: encrypt a payload as an IMKIT server using this scheme would send it. */
export declare function encode(value: unknown): string;
/** Decrypt and parse one payload; throws when it does not authenticate or is not JSON. */
export declare function decode(raw: unknown): unknown;
