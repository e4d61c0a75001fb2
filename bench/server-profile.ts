/**
 * Summarises a V8 .cpuprofile (from `node --cpu-prof`) as self time per function and per area
 * of the code, so the server benchmark can say where tdekv's CPU went without a viewer.
 */
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface SelfTime {
  name: string;
  /** Where: a path relative to the compiled tree, a node: module, or '' for V8's pseudo-functions. */
  where: string;
  ms: number;
  share: number;
}

export interface ProfileSummary {
  totalMs: number;
  samples: number;
  functions: SelfTime[];
  areas: SelfTime[];
}

/**
 * `distRoot` is the compiled tree's root (file URL prefix stripped from script URLs). Time
 * per sample comes from timeDeltas (delta i+1 is the time spent in sample i), which is
 * what DevTools shows as self time; idle samples are kept, as an idle server is a finding.
 */
export async function summariseProfile(file: string, distRoot: string): Promise<ProfileSummary> {
  const profile = JSON.parse(await readFile(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i]!;
    const dt = profile.timeDeltas[i + 1] ?? 0;
    selfUs.set(id, (selfUs.get(id) ?? 0) + dt);
  }
  const totalUs = [...selfUs.values()].reduce((a, b) => a + b, 0) || 1;

  const parentOf = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parentOf.set(c, n.id);
  // A native builtin (a binding such as writeBuffer) has no script: name the JS frame that
  // called it, or "writeBuffer" alone would not say whether sockets or the WAL wrote.
  const jsCaller = (id: number): CallFrame | undefined => {
    for (let p = parentOf.get(id); p !== undefined; p = parentOf.get(p)) {
      const frame = byId.get(p)?.callFrame;
      if (frame && frame.url !== '') return frame;
    }
    return undefined;
  };

  const functions = new Map<string, SelfTime>();
  const areas = new Map<string, SelfTime>();
  const add = (into: Map<string, SelfTime>, key: string, name: string, where: string, us: number): void => {
    const entry = into.get(key) ?? { name, where, ms: 0, share: 0 };
    entry.ms += us / 1000;
    entry.share += us / totalUs;
    into.set(key, entry);
  };
  const at = (frame: CallFrame): string => `${location(frame.url, distRoot)}:${frame.lineNumber + 1}`;
  for (const [id, us] of selfUs) {
    const frame = byId.get(id)?.callFrame;
    if (!frame) continue;
    const pseudo = frame.functionName.startsWith('(');
    if (frame.url === '' && !pseudo) {
      const caller = jsCaller(id);
      const where = caller ? `native, called by ${caller.functionName || '(anonymous)'} ${at(caller)}` : 'native';
      add(functions, `${frame.functionName}\0${where}`, frame.functionName, where, us);
      const area = caller ? areaOf(caller.functionName, location(caller.url, distRoot)) : 'node internals';
      add(areas, `${area} (native)`, `${area}: native calls`, '', us);
      continue;
    }
    const name = frame.functionName || (frame.url ? '(anonymous)' : '(unknown)');
    const where = frame.url === '' ? '' : at(frame);
    add(functions, `${name}\0${where}`, name, where, us);
    const area = areaOf(name, location(frame.url, distRoot));
    add(areas, area, area, '', us);
  }
  const sorted = (m: Map<string, SelfTime>): SelfTime[] => [...m.values()].sort((a, b) => b.ms - a.ms);
  return { totalMs: totalUs / 1000, samples: profile.samples.length, functions: sorted(functions), areas: sorted(areas) };
}

function location(url: string, distRoot: string): string {
  if (url === '') return '';
  if (!url.startsWith('file:')) return url;
  const path = fileURLToPath(url);
  return path.startsWith(distRoot) ? path.slice(distRoot.length).replace(/^\//, '') : path;
}

/** tdekv by source directory (src/engine, src/server, ...), dependencies by package, node internals as one. */
function areaOf(name: string, where: string): string {
  if (where === '') return name; // (garbage collector), (program), (idle), (root)
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(where);
  if (pkg) return `dependency ${pkg[1]}`;
  if (where.startsWith('node:')) return 'node internals';
  const dir = /^(src\/[^/]+)\//.exec(where);
  if (dir) return `tdekv ${dir[1]}`;
  return where.startsWith('src/') ? 'tdekv src' : where;
}
