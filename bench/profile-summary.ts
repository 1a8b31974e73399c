import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/**
 * Where a V8 CPU profile (`node --cpu-prof`) spends its time: self time summed by package or source
 * file, and the hottest functions, as text. Every .cpuprofile in `dir` is merged.
 */
export function summarizeProfiles(dir: string, top = 20): string {
  const byArea = new Map<string, number>();
  const byFunction = new Map<string, number>();
  let total = 0;
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'))) {
    const profile = JSON.parse(readFileSync(join(dir, file), 'utf8')) as CpuProfile;
    const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
    profile.samples.forEach((id, i) => {
      const us = profile.timeDeltas[i] ?? 0;
      const frame = nodes.get(id)!.callFrame;
      const area = areaOf(frame.url, frame.functionName);
      const fn = `${frame.functionName || '(anonymous)'} ${shortUrl(frame.url)}:${frame.lineNumber + 1}`;
      byArea.set(area, (byArea.get(area) ?? 0) + us);
      byFunction.set(fn, (byFunction.get(fn) ?? 0) + us);
      total += us;
    });
  }
  if (total === 0) return `no CPU profiles in ${dir}`;
  const lines = (map: Map<string, number>) =>
    [...map]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(
        ([name, us]) =>
          `  ${((us / total) * 100).toFixed(1).padStart(5)}%  ${(us / 1000).toFixed(0).padStart(7)} ms  ${name}`,
      );
  return [
    `CPU profile of the bridge (${(total / 1e6).toFixed(1)} s sampled, profiles in ${dir})`,
    'self time by area:',
    ...lines(byArea),
    'hottest functions (self time):',
    ...lines(byFunction),
  ].join('\n');
}

/** A package under node_modules, a file of this project, node internals, or V8's own buckets. */
function areaOf(url: string, functionName: string): string {
  if (!url) return functionName.startsWith('(') ? functionName : '(native)';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1]!;
  if (url.startsWith('node:')) return url.split('/').slice(0, 2).join('/');
  const own = /\/(dist|src)\/(.+)$/.exec(url);
  return own ? `imkit-bridge ${own[2]}` : url;
}

function shortUrl(url: string): string {
  const pkg = /node_modules\/(.+)$/.exec(url);
  if (pkg) return pkg[1]!;
  const own = /\/(dist|src)\/(.+)$/.exec(url);
  return own ? own[2]! : url;
}
