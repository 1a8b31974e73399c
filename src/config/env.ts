const REFERENCE = /\$\{env:([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;

export interface MissingVariable {
  /** Dotted path of the YAML value that referenced the variable. */
  path: string;
  name: string;
}

/**
 * Replaces `${env:NAME}` and `${env:NAME:-default}` inside every string of a parsed YAML tree.
 * Substitution happens on parsed values, not on the file text, so a secret containing YAML syntax
 * cannot change the document's structure. A reference to an unset variable without a default is
 * removed (not replaced by an empty string): an optional key then counts as absent, and a required
 * one fails validation with a message naming the variable.
 */
export function substituteEnv(
  tree: unknown,
  env: NodeJS.ProcessEnv,
  path: string[] = [],
  missing: MissingVariable[] = [],
): { value: unknown; missing: MissingVariable[] } {
  if (typeof tree === 'string') {
    let absent = false;
    const replaced = tree.replace(REFERENCE, (_whole, name: string, fallback: string | undefined) => {
      const set = env[name];
      if (set !== undefined && set !== '') return set;
      if (fallback !== undefined) return fallback;
      missing.push({ path: path.join('.'), name });
      absent = true;
      return '';
    });
    return { value: absent ? undefined : replaced, missing };
  }
  if (Array.isArray(tree)) {
    return {
      value: tree.map((item, i) => substituteEnv(item, env, [...path, String(i)], missing).value),
      missing,
    };
  }
  if (tree !== null && typeof tree === 'object') {
    const out: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(tree)) {
      const value = substituteEnv(item, env, [...path, key], missing).value;
      if (value !== undefined) out[key] = value;
    }
    return { value: out, missing };
  }
  return { value: tree, missing };
}
