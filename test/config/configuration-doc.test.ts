import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, test } from 'vitest';
import type { z } from 'zod';
import { configSchema } from '../../src/config/schema.js';

const DOC = resolve(import.meta.dirname, '../../docs/configuration.md');

/**
 * Every key path the schema accepts, as the doc writes them: `webhooks[].retry.schedule`. Unwraps
 * defaults, optionals, transforms and unions, and descends into objects and arrays.
 */
function keyPaths(schema: z.core.$ZodType, prefix = ''): string[] {
  const def = schema._zod.def as z.core.$ZodTypeDef & Record<string, unknown>;
  switch (def.type) {
    case 'object': {
      const shape = (def as unknown as z.core.$ZodObjectDef).shape;
      return Object.entries(shape).flatMap(([key, child]) => {
        const path = prefix ? `${prefix}.${key}` : key;
        return [path, ...keyPaths(child, path)];
      });
    }
    case 'array':
      return keyPaths((def as unknown as z.core.$ZodArrayDef).element, `${prefix}[]`);
    case 'union':
      return [
        ...new Set((def as unknown as z.core.$ZodUnionDef).options.flatMap((o) => keyPaths(o, prefix))),
      ];
    case 'pipe':
      return keyPaths((def as unknown as z.core.$ZodPipeDef).in, prefix);
    case 'default':
    case 'prefault':
    case 'optional':
    case 'nullable':
    case 'readonly':
      return keyPaths((def as unknown as { innerType: z.core.$ZodType }).innerType, prefix);
    default:
      return [];
  }
}

describe('docs/configuration.md', () => {
  const doc = readFileSync(DOC, 'utf8');
  const documented = new Set([...doc.matchAll(/^\| `([^`]+)` +\|/gm)].map((m) => m[1]!));

  test('describes every key of the config schema, in its table', () => {
    const keys = keyPaths(configSchema);
    expect(keys.length).toBeGreaterThan(40);
    expect(keys.filter((k) => !documented.has(k))).toEqual([]);
  });
});
