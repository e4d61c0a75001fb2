/**
 * Child process for the data dir lock tests.
 *   argv: "hold" LOCKPATH            takes the lock, prints "locked", waits to be killed
 *   argv: "race" DATADIR ROUNDS GO   waits for the file GO, then until it has opened the env
 *         (a writer) ROUNDS times, retrying when refused: claims MARKER = DATADIR/../holder with O_EXCL, yields, removes it, closes.
 *         A claim that finds MARKER already there means two writers held the data dir at
 *         once. Prints one JSON line {opened, refused, overlaps}.
 */
import { existsSync } from 'node:fs';
import { open, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { setImmediate as yieldTurn, setTimeout as sleep } from 'node:timers/promises';
import { EncryptedEnv } from '../../src/env/encrypted-env.js';
import { DirLock } from '../../src/env/dir-lock.js';
import { PlaintextMasterKey } from '../../src/masterkey/plaintext.js';
import { errnoCode, isTdekvError } from '../../src/errors.js';

const [mode, ...args] = process.argv.slice(2);

if (mode === 'hold') {
  await DirLock.acquire(args[0]!);
  process.stdout.write('locked\n');
  setInterval(() => undefined, 60_000);
} else if (mode === 'race') {
  const [dataDir, rounds, go] = args as [string, string, string];
  const marker = join(dirname(dataDir), 'holder');
  process.stdout.write('ready\n');
  while (!existsSync(go)) await sleep(2);
  const result = { opened: 0, refused: 0, overlaps: 0 };
  while (result.opened < Number(rounds)) {
    let env: EncryptedEnv;
    try {
      env = await EncryptedEnv.open({
        dataDir,
        method: 'aes256-ctr',
        rotationPeriodMs: 3600_000,
        masterKey: new PlaintextMasterKey(),
        fileDictionaryLog: true,
        fileDictionaryRewriteThreshold: 100,
      });
    } catch (err) {
      if (!isTdekvError(err, 'DATA_DIR_LOCKED')) throw err;
      result.refused += 1;
      await sleep(1);
      continue;
    }
    result.opened += 1;
    let claimed = false;
    try {
      await (await open(marker, 'wx')).close();
      claimed = true;
    } catch (err) {
      if (errnoCode(err) !== 'EEXIST') throw err;
      result.overlaps += 1;
    }
    // Hold the data dir across a few turns so that the others try while it is held.
    for (let t = 0; t < 5; t++) await yieldTurn();
    if (claimed) await unlink(marker);
    await env.close();
  }
  process.stdout.write(JSON.stringify(result) + '\n');
} else {
  throw new Error(`unknown mode ${mode}`);
}
