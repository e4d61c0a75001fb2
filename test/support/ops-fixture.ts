import { writeFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';
import { loadConfig } from '../../src/config/config.js';
import type { TdekvConfig } from '../../src/config/types.js';
import { Engine } from '../../src/engine/engine.js';
import { openEnvFromConfig, type ManagedEnv } from '../../src/env/open-env.js';
import { SMALL_TUNING } from './engine-helpers.js';
import { cleanup, tempDir, writeKeyFile } from './fs-helpers.js';

/** A real encrypted data dir opened from a TOML config, with an engine on it and some data. */
export interface OpsFixture {
  root: string;
  config: TdekvConfig;
  /** The master key, hex: must never appear in metrics or status. */
  masterKeyHex: string;
  managed: ManagedEnv;
  engine: Engine;
  /** Closes the engine and the env, then removes the temp dir. */
  close(): Promise<void>;
}

export async function openOpsFixture(prefix = 'tdekv-ops-'): Promise<OpsFixture> {
  const root = await tempDir(prefix);
  try {
    const key = await writeKeyFile(root);
    const configPath = join(root, 'tdekv.toml');
    await writeFile(
      configPath,
      `[storage]\ndata-dir = "data"\n[security.encryption]\ndata-encryption-method = "aes256-ctr"\n[security.encryption.master-key]\ntype = "file"\npath = "master.key"\n`,
    );
    const config = await loadConfig(configPath);
    const managed = await openEnvFromConfig(config);
    const engine = await Engine.open({ env: managed.env, ...SMALL_TUNING });
    let closed = false;
    return {
      root,
      config,
      masterKeyHex: key.hex,
      managed,
      engine,
      async close() {
        if (closed) return;
        closed = true;
        try {
          await engine.close();
          await managed.close();
        } finally {
          await cleanup(root);
        }
      },
    };
  } catch (err) {
    await cleanup(root);
    throw err;
  }
}

/** Enough writes for the engine to flush tables, so the file dictionary changes; returns once background work has settled. */
export async function writeSomeData(engine: Engine, count = 400): Promise<void> {
  const value = Buffer.alloc(200, 'v');
  for (let i = 0; i < count; i++) await engine.put(Buffer.from(`key-${String(i).padStart(6, '0')}`), value);
  await engine.flush();
  await settle(engine);
}

/**
 * Waits until flushes and compactions have stopped for a while, so the dictionaries hold
 * still while a test compares a scrape with the disk.
 */
export async function settle(engine: Engine, quietMs = 100, timeoutMs = 10_000): Promise<void> {
  // Removing obsolete files after a compaction changes the file dictionary (and the listing) but no engine counter.
  const fingerprint = async () => {
    const s = engine.stats();
    return JSON.stringify([s.flushes, s.compactions, s.immutableMemtable, s.levels, await engine.env.list('')]);
  };
  const deadline = Date.now() + timeoutMs;
  let last = await fingerprint();
  for (;;) {
    await sleep(quietMs);
    const now = await fingerprint();
    if (now === last) return;
    if (Date.now() > deadline) throw new Error('the engine kept compacting');
    last = now;
  }
}

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Samples of a Prometheus text exposition (enough of the format for prom-client's output). */
export function parseSamples(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)/.exec(line);
    if (m === null) throw new Error(`cannot parse exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = JSON.parse(`"${l[2]!}"`) as string;
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return samples;
}

/** Every series name an exposition declares, histogram and summary series included even before their first observation. */
export function exposedNames(text: string): Set<string> {
  const names = new Set<string>();
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    const [, name, type] = m as unknown as [string, string, string];
    names.add(name);
    if (type === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(name + s);
    if (type === 'summary') for (const s of ['_sum', '_count']) names.add(name + s);
  }
  for (const s of parseSamples(text)) names.add(s.name);
  return names;
}

/** The one sample of `name` whose labels include `labels`; throws if there is not exactly one. */
export function sampleOf(samples: readonly Sample[], name: string, labels: Record<string, string> = {}): number {
  const found = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  if (found.length !== 1) throw new Error(`expected one sample ${name}${JSON.stringify(labels)}, found ${found.length}`);
  return found[0]!.value;
}
