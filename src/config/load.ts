import { readFileSync } from 'node:fs';
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { UsageError } from '../errors.js';
import { substituteEnv, type MissingVariable } from './env.js';
import { configSchema, type BridgeConfig } from './schema.js';

export const DEFAULT_CONFIG_PATH = 'config/bridge.yaml';

export class ConfigError extends UsageError {
  readonly code = 'BRIDGE_ERR_CONFIG';

  /** One `path: problem` line per problem, safe to print (never contains values). */
  constructor(readonly problems: readonly string[]) {
    super(problems.join('\n'));
  }
}

/** `--config`, else `$IMKIT_BRIDGE_CONFIG`, else `config/bridge.yaml`. */
export function resolveConfigPath(flag: string | undefined, env: NodeJS.ProcessEnv): string {
  return flag ?? env.IMKIT_BRIDGE_CONFIG ?? DEFAULT_CONFIG_PATH;
}

export function loadConfig(file: string, env: NodeJS.ProcessEnv = process.env): BridgeConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError([`${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? 'error'})`]);
  }
  return parseConfig(text, env, file);
}

export function parseConfig(text: string, env: NodeJS.ProcessEnv, file = 'config'): BridgeConfig {
  const document = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (document.errors.length > 0) {
    throw new ConfigError(
      document.errors.map((e) => {
        const line = e.linePos?.[0];
        return `${file}${line ? `:${line.line}:${line.col}` : ''}: ${e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')}`;
      }),
    );
  }
  const { value, missing } = substituteEnv(document.toJS(), env);
  const result = configSchema.safeParse(value ?? {});
  if (!result.success) throw new ConfigError(describeIssues(result.error.issues, missing));
  return deepFreeze(result.data) as BridgeConfig;
}

export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) {
    out += typeof part === 'number' ? `[${part}]` : `${out ? '.' : ''}${String(part)}`;
  }
  return out || '(root)';
}

function describeIssues(issues: readonly z.core.$ZodIssue[], missing: readonly MissingVariable[]): string[] {
  const lines = issues.flatMap((issue) => {
    if (issue.code === 'unrecognized_keys') {
      return issue.keys.map((key) => `${formatPath([...issue.path, key])}: unknown key`);
    }
    const dotted = issue.path.map(String).join('.');
    const variable = missing.find((m) => m.path === dotted || m.path.startsWith(`${dotted}.`));
    const hint = variable ? ` (\${env:${variable.name}} is not set)` : '';
    return [`${formatPath(issue.path)}: ${issue.message}${hint}`];
  });
  return [...new Set(lines)];
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const item of Object.values(value)) deepFreeze(item);
  }
  return value;
}
