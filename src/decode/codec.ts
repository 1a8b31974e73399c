import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { CodecLoadError } from '../errors.js';

/** A deployment's private transport codec (`encoding: custom`, see examples/codecs). */
export interface Codec {
  decode(raw: unknown): unknown;
}

/** `file://` URLs as given; absolute paths as they are; anything else relative to the process cwd. */
export function codecUrl(specifier: string): string {
  if (specifier.startsWith('file://')) return specifier;
  const path = isAbsolute(specifier) ? specifier : resolve(process.cwd(), specifier);
  return pathToFileURL(path).href;
}

export async function loadCodec(specifier: string): Promise<Codec> {
  const url = codecUrl(specifier);
  let mod: Record<string, unknown>;
  try {
    mod = (await import(url)) as Record<string, unknown>;
  } catch (err) {
    throw new CodecLoadError(`cannot load codec ${specifier}: ${(err as Error).message}`, { cause: err });
  }
  const decode = mod.decode;
  if (typeof decode !== 'function') {
    throw new CodecLoadError(`codec ${specifier} does not export a decode(raw) function`);
  }
  return { decode: (raw) => (decode as (raw: unknown) => unknown)(raw) };
}
