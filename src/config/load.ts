import { readFileSync } from 'node:fs';
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Node } from 'yaml';
import type { z } from 'zod';
import { ConfigError } from '../errors.js';
import { substituteEnv, type MissingVariable } from './env.js';
import { configSchema, type BridgeConfig } from './schema.js';

export const DEFAULT_CONFIG_PATH = 'config/bridge.yaml';

/** A bridge config is a few kilobytes; past this a file is a mistake, and parsing it would take seconds and gigabytes. */
export const MAX_CONFIG_BYTES = 4 * 1024 * 1024;
/** Problems printed at most; the rest are counted, so a badly generated file still gives readable output. */
const MAX_PROBLEMS = 50;
/** Who needs account credentials, for the note that lists the ones not set. */
const CREDENTIAL_USERS = 'run --role all|ingest';

export interface ConfigOptions {
  /** The file name that prefixes problems about the file itself; default `config`. */
  file?: string;
  /**
   * Whether this process opens IMKIT sessions (`run --role all|ingest`) and so needs the account
   * credentials: `accounts[].token`, `accounts[].tokenFile`, `imkit.apiKey`, `imkit.clientKey`.
   * When false, an unset variable in those fields is not an error but a note. Default true.
   */
  accountCredentials?: boolean;
}

export interface LoadedConfig {
  config: BridgeConfig;
  /** For operators: credentials whose variable is not set, and which commands need them. */
  notes: string[];
}

/** `--config`, else `$IMKIT_BRIDGE_CONFIG`, else `config/bridge.yaml`. */
export function resolveConfigPath(flag: string | undefined, env: NodeJS.ProcessEnv): string {
  return flag ?? env.IMKIT_BRIDGE_CONFIG ?? DEFAULT_CONFIG_PATH;
}

export function loadConfig(
  file: string,
  options: Omit<ConfigOptions, 'file'> = {},
  env: NodeJS.ProcessEnv = process.env,
): BridgeConfig {
  return readConfig(file, options, env).config;
}

/** Like `loadConfig`, with the notes `config check` prints. */
export function readConfig(
  file: string,
  options: Omit<ConfigOptions, 'file'> = {},
  env: NodeJS.ProcessEnv = process.env,
): LoadedConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError([`${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? 'error'})`]);
  }
  return parseConfigWithNotes(text, env, { ...options, file });
}

export function parseConfig(text: string, env: NodeJS.ProcessEnv, options: ConfigOptions = {}): BridgeConfig {
  return parseConfigWithNotes(text, env, options).config;
}

export function parseConfigWithNotes(
  text: string,
  env: NodeJS.ProcessEnv,
  options: ConfigOptions = {},
): LoadedConfig {
  const file = options.file ?? 'config';
  const { value, missing } = substituteEnv(parseYaml(text, file), env);
  const deferred =
    options.accountCredentials === false ? missing.filter((m) => isAccountCredential(m.path)) : [];
  const deferredSet = new Set(deferred);
  const unset = missing.filter((m) => !deferredSet.has(m));
  const result = configSchema.safeParse(value ?? {});
  // A deferred credential keeps its reference text, a value of the right shape, so problems come only from the rest.
  const problems = [
    ...unset.map((m) => `${formatPath(m.path)}: \${env:${m.name}} is not set`),
    ...(result.success ? [] : describeIssues(result.error.issues, unset)),
  ];
  if (!result.success || problems.length > 0) throw new ConfigError(capped(problems));
  return {
    config: deepFreeze(result.data) as BridgeConfig,
    notes: deferred.map(
      (m) => `${formatPath(m.path)}: \${env:${m.name}} is not set; needed by ${CREDENTIAL_USERS}`,
    ),
  };
}

export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) {
    out += typeof part === 'number' ? `[${part}]` : `${out ? '.' : ''}${String(part)}`;
  }
  return out || '(root)';
}

function parseYaml(text: string, file: string): unknown {
  const bytes = Buffer.byteLength(text);
  if (bytes > MAX_CONFIG_BYTES) {
    throw new ConfigError([
      `${file}: ${(bytes / 1_048_576).toFixed(1)} MiB is too large for a config file (at most ${MAX_CONFIG_BYTES / 1_048_576} MiB)`,
    ]);
  }
  const lineCounter = new LineCounter();
  // yaml's own uniqueKeys check compares every key with every other: quadratic in the size of a map.
  const document = parseDocument(text, { prettyErrors: true, uniqueKeys: false, lineCounter });
  const at = (offset: number | undefined) => {
    if (offset === undefined) return file;
    const { line, col } = lineCounter.linePos(offset);
    return `${file}:${line}:${col}`;
  };
  const problems = [
    ...document.errors.map(
      (e) => `${at(e.pos[0])}: ${e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')}`,
    ),
    ...duplicateKeys(document.contents).map(
      ({ path, offset }) => `${at(offset)}: ${formatPath(path)}: duplicate key`,
    ),
  ];
  if (problems.length > 0) throw new ConfigError(capped(problems));
  try {
    return document.toJS();
  } catch (err) {
    // An alias bomb ("billion laughs") or nesting deeper than the stack: the file is at fault.
    throw new ConfigError([`${file}: cannot be read as data (${(err as Error).message})`]);
  }
}

interface Visit {
  node: unknown;
  key: string | number | undefined;
  parent: Visit | undefined;
}

/** Every key that repeats an earlier key of the same map, in one pass over the document. */
function duplicateKeys(root: unknown): { path: (string | number)[]; offset: number | undefined }[] {
  const found: { path: (string | number)[]; offset: number | undefined }[] = [];
  const stack: Visit[] = [{ node: root, key: undefined, parent: undefined }];
  for (let visit = stack.pop(); visit; visit = stack.pop()) {
    const { node } = visit;
    if (isMap(node)) {
      const seen = new Set<unknown>();
      for (const pair of node.items) {
        const key = isScalar(pair.key) ? pair.key.value : pair.key;
        const name = isScalar(pair.key) ? String(key) : '?';
        if (seen.has(key)) {
          found.push({
            path: [...pathOf(visit), name],
            offset: (pair.key as Node | null)?.range?.[0],
          });
        }
        seen.add(key);
        stack.push({ node: pair.value, key: name, parent: visit });
      }
    } else if (isSeq(node)) {
      node.items.forEach((child, i) => stack.push({ node: child, key: i, parent: visit }));
    }
  }
  return found.sort((a, b) => (a.offset ?? 0) - (b.offset ?? 0));
}

function pathOf(visit: Visit): (string | number)[] {
  const path: (string | number)[] = [];
  for (let v: Visit | undefined = visit; v?.key !== undefined; v = v.parent) path.unshift(v.key);
  return path;
}

function capped(problems: readonly string[]): string[] {
  const unique = [...new Set(problems)];
  if (unique.length <= MAX_PROBLEMS) return unique;
  return [...unique.slice(0, MAX_PROBLEMS), `… and ${unique.length - MAX_PROBLEMS} more problems`];
}

function isAccountCredential(path: readonly (string | number)[]): boolean {
  const [first, second, third] = path;
  if (first === 'imkit') return path.length === 2 && (second === 'apiKey' || second === 'clientKey');
  return first === 'accounts' && path.length === 3 && (third === 'token' || third === 'tokenFile');
}

function describeIssues(issues: readonly z.core.$ZodIssue[], missing: readonly MissingVariable[]): string[] {
  // A field whose variable is not set is reported as such, not as an invalid value: drop issues at
  // or under such a field, and those of a container holding one (a union over a list of secrets).
  const unsetFields = new Set(missing.map((m) => formatPath(m.path)));
  const holdingUnset = new Set(
    missing.flatMap((m) => m.path.map((_, i) => formatPath(m.path.slice(0, i + 1)))),
  );
  return issues.flatMap((issue) => {
    if (issue.code === 'unrecognized_keys') {
      return issue.keys.map((key) => `${formatPath([...issue.path, key])}: unknown key`);
    }
    const path = formatPath(issue.path);
    const unset =
      (issue.path.length > 0 && holdingUnset.has(path)) ||
      issue.path.some((_, i) => unsetFields.has(formatPath(issue.path.slice(0, i + 1))));
    return unset ? [] : [`${path}: ${issue.message}`];
  });
}

function deepFreeze<T>(value: T): T {
  const stack: unknown[] = [value];
  for (let item = stack.pop(); item !== undefined; item = stack.pop()) {
    if (item !== null && typeof item === 'object' && !Object.isFrozen(item)) {
      Object.freeze(item);
      for (const child of Object.values(item)) stack.push(child);
    }
  }
  return value;
}
