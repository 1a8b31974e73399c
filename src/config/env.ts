const REFERENCE = /\$\{env:([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;

export interface MissingVariable {
  /** Path of the YAML value that referenced the variable, as keys and array indexes. */
  path: readonly (string | number)[];
  name: string;
}

interface Slot {
  holder: Record<string | number, unknown>;
  key: string | number;
  parent: Slot | undefined;
}

/**
 * Replaces `${env:NAME}` and `${env:NAME:-default}` inside every string of a parsed YAML tree, in
 * place. Substitution happens on parsed values, not on the file text, so a secret containing YAML
 * syntax cannot change the document's structure. A variable that is unset or empty and has no
 * default is listed in `missing` and its reference text stays in the string: the caller decides
 * whether that is an error (it is, except for credentials a process does not need), and validation
 * still sees a value where the file has one instead of a key that silently vanished.
 *
 * Walks with an explicit stack so a deeply nested file cannot overflow the call stack.
 */
export function substituteEnv(
  tree: unknown,
  env: NodeJS.ProcessEnv,
): { value: unknown; missing: MissingVariable[] } {
  const missing: MissingVariable[] = [];
  const root: Record<string, unknown> = { tree };
  const stack: Slot[] = [{ holder: root, key: 'tree', parent: undefined }];
  for (let slot = stack.pop(); slot; slot = stack.pop()) {
    const node = slot.holder[slot.key];
    if (typeof node === 'string') {
      const at = slot;
      slot.holder[slot.key] = node.replace(REFERENCE, (whole, name: string, fallback: string | undefined) => {
        const set = env[name];
        if (set !== undefined && set !== '') return set;
        if (fallback !== undefined) return fallback;
        missing.push({ path: pathOf(at), name });
        return whole;
      });
    } else if (node !== null && typeof node === 'object') {
      const holder = node as Record<string | number, unknown>;
      const keys: (string | number)[] = Array.isArray(node) ? node.map((_, i) => i) : Object.keys(node);
      // Reversed, so values are visited (and missing variables listed) in document order.
      for (let i = keys.length - 1; i >= 0; i--) stack.push({ holder, key: keys[i]!, parent: slot });
    }
  }
  return { value: root.tree, missing };
}

function pathOf(slot: Slot): (string | number)[] {
  const path: (string | number)[] = [];
  for (let s: Slot | undefined = slot; s?.parent; s = s.parent) path.unshift(s.key);
  return path;
}
