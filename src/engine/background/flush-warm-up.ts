/**
 * Runs the flush code once on made-up entries, into a sink that keeps nothing, when the
 * background worker starts: V8 compiles a thread's hot code the first times it runs, and the
 * worker is a thread of its own, with its own compiled code. Without this the first real flush
 * after a start ran two to four times longer than later ones (a 16 MiB memtable: 219–264 ms
 * against 45–90 ms, engine alone; with it 65–104 ms), and V8's compiler threads took CPU from
 * the main thread meanwhile. Measured in docs/engine.md, "The background worker thread".
 *
 * Nothing reaches the data dir: the table is encrypted (the same code path as a real one)
 * under a key and IV made for it and dropped, and its bytes are discarded as they come.
 */
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { keyLengthOf } from '../../crypto/method.js';
import { freshIv, randomKey, zeroize } from '../../crypto/random.js';
import { TdekvError } from '../../errors.js';
import { EncryptedBufferSink } from '../../env/encrypted-buffer-sink.js';
import type { JobContext } from '../background-job.js';
import { writeMemtable } from '../flush.js';
import { ValueKind } from '../internal-key.js';
import { Memtable } from '../memtable.js';
import type { EngineTuning } from '../options.js';

/** Entries per warm-up flush, and rounds: enough for V8 to optimize the flush's loops, at about 0.3 s of the worker's CPU. */
export const WARM_UP_ENTRIES = 20_000;
export const WARM_UP_ROUNDS = 3;

/** What a warm-up did: for tests and the log. */
export interface WarmUpResult {
  /** Rounds flushed to their end. */
  rounds: number;
  /** Entries the flushes wrote (older versions of a key are dropped, as in a real flush). */
  entriesWritten: number;
  /** Encrypted table bytes produced and discarded. */
  bytes: number;
  /** Stopped early because `stop()` said so (a real job arrived). */
  stopped: boolean;
  /** Why it failed, if it did (nothing is lost: the first real flush compiles the code instead). */
  error?: string;
}

class WarmUpStopped extends Error {}

/**
 * Flushes WARM_UP_ROUNDS memtables of WARM_UP_ENTRIES made-up entries (a shared key prefix,
 * some keys written twice, a few deletions: the sort, the drop rule and the table builder
 * all run) with `tuning`'s table options. Between slices of `sliceMs` it yields, and gives up
 * as soon as `stop()` is true, so a real job never waits more than one slice for it.
 */
export async function warmUpFlush(tuning: EngineTuning, sliceMs: number, stop: () => boolean): Promise<WarmUpResult> {
  const result: WarmUpResult = { rounds: 0, entriesWritten: 0, bytes: 0, stopped: false };
  const value = Buffer.alloc(16, 0x76);
  const key = Buffer.alloc(24);
  key.write('warm-up/key:', 0, 'latin1');
  for (let round = 0; round < WARM_UP_ROUNDS; round++) {
    if (stop()) return { ...result, stopped: true };
    const mem = new Memtable();
    let seq = 1;
    for (let i = 0; i < WARM_UP_ENTRIES; i++) {
      // Keys in scattered order, a tenth of them written again later (a newer version).
      const n = i < WARM_UP_ENTRIES * 0.9 ? (i * 7919) % (WARM_UP_ENTRIES * 0.9) : (i * 131) % (WARM_UP_ENTRIES * 0.9);
      key.write(String(n).padStart(12, '0'), 12, 'latin1');
      mem.add(seq++, i % 97 === 0 ? ValueKind.Deletion : ValueKind.Value, key, value);
    }
    const frame = { method: 'aes256-ctr' as const, key: randomKey(keyLengthOf('aes256-ctr')), keyId: 0, iv: freshIv() };
    const sink = new EncryptedBufferSink('(flush warm-up)', frame, (chunk) => {
      result.bytes += chunk.length;
    });
    zeroize(frame.key);
    const ctx: JobContext = {
      output: {
        tuning,
        env: {
          create: () => Promise.reject(new TdekvError('INVALID_ARGUMENT', 'the flush warm-up writes no file')),
          remove: async () => undefined,
        },
        newFileNumber: () => 0,
        pendingOutputs: new Set(),
        newTable: async () => ({ number: 0, file: sink }),
      },
      sliceMs: () => sliceMs,
      yieldSlice: async () => {
        await yieldToEventLoop();
        if (stop()) throw new WarmUpStopped();
      },
    };
    try {
      const files = await writeMemtable(ctx, { iterator: () => Memtable.iteratorOf(mem.shared()) }, seq);
      result.rounds++;
      for (const f of files) result.entriesWritten += f.entries;
    } catch (err) {
      if (err instanceof WarmUpStopped) return { ...result, stopped: true };
      throw err;
    }
    await yieldToEventLoop();
  }
  return result;
}
