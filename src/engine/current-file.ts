import type { EngineFs } from './engine-fs.js';
import { TdekvError } from '../errors.js';
import { CURRENT, CURRENT_TMP } from './file-names.js';
import { readLog } from './log-reader.js';
import { LogWriter } from './log-writer.js';

/**
 * CURRENT names the live manifest. In an encrypted data dir it is one authenticated log
 * record, so nobody without the data key can point it at another manifest (an older one
 * left behind, say) by flipping ciphertext bits; in plaintext and legacy files it is the
 * name and a newline, as LevelDB writes it.
 */

/** The manifest name CURRENT holds; throws DATA_CORRUPTED naming the file when it is not one. */
export function readCurrentFile(env: EngineFs, path = CURRENT): string {
  const file = env.openReadSync(path);
  let name: string;
  try {
    if (file.auth) {
      const { records } = readLog(file);
      if (records.length !== 1) throw new TdekvError('DATA_CORRUPTED', `${path} in ${env.dataDir} holds ${records.length} records where it must hold one manifest name; restore the data dir from a backup`);
      name = records[0]!.payload.toString('utf8');
    } else {
      name = file.readSync(0, Math.min(file.size, 4096)).toString('utf8').trim();
    }
  } finally {
    file.close();
  }
  if (!/^MANIFEST-\d+$/.test(name)) {
    throw new TdekvError('DATA_CORRUPTED', `${path} in ${env.dataDir} does not name a manifest; the file is damaged: restore the data dir from a backup`);
  }
  return name;
}

/** Points CURRENT at `manifest`: written under a temporary name, synced, renamed over CURRENT. */
export async function writeCurrentFile(env: EngineFs, manifest: string): Promise<void> {
  if (await env.exists(CURRENT_TMP)) await env.remove(CURRENT_TMP);
  const file = await env.create(CURRENT_TMP);
  const writer = new LogWriter(file);
  try {
    if (file.auth) await writer.addRecord(Buffer.from(manifest, 'utf8'));
    else await file.append(Buffer.from(manifest + '\n'));
    await writer.sync();
  } finally {
    await writer.close();
  }
  await env.rename(CURRENT_TMP, CURRENT);
}
