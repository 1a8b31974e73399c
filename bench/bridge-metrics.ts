import type { BridgeProcess } from '../test/support/bridge-process.js';

/** `imkit_bridge_<name>` of a bridge's /metrics (0 when absent or unreachable). */
export async function metric(bridge: BridgeProcess, name: string): Promise<number> {
  const [value] = await metrics(bridge, [name]);
  return value!;
}

/**
 * For each name, `imkit_bridge_<name>` of one read of a bridge's /metrics, summed over its series
 * (0 when absent or unreachable).
 */
export async function metrics(bridge: BridgeProcess, names: readonly string[]): Promise<number[]> {
  let text: string;
  try {
    text = (await bridge.get('/metrics')).body;
  } catch {
    return names.map(() => 0);
  }
  const totals = names.map(() => 0);
  for (const line of text.split('\n')) {
    names.forEach((name, i) => {
      const full = `imkit_bridge_${name}`;
      const next = line[full.length];
      if (line.startsWith(full) && (next === '{' || next === ' '))
        totals[i]! += Number(line.slice(line.lastIndexOf(' ') + 1));
    });
  }
  return totals;
}
