/**
 * Child process for the crash test: performs env operations forever. The parent SIGKILLs
 * it at a random moment.
 *   argv: dataDir keyFile seed
 *   stdout: "ready NAME…" (the files it found), then per operation "start OP ARGS" before it
 *   begins and "ok" once it is durable. OP ARGS: "create NAME SIZE SEED" | "rename FROM TO" |
 *   "remove NAME".
 */
import { EncryptedEnv } from '../../src/env/encrypted-env.js';
import { FileMasterKey } from '../../src/masterkey/file.js';
import { contentFor } from './crash-content.js';

const [dataDir, keyFile, seedArg] = process.argv.slice(2) as [string, string, string];
let seed = Number(seedArg);
const next = (): number => {
  seed = (seed * 1103515245 + 12345) % 2 ** 31;
  return seed;
};

const env = await EncryptedEnv.open({
  dataDir,
  method: 'aes256-ctr',
  rotationPeriodMs: 3600_000,
  masterKey: await FileMasterKey.load(keyFile),
  fileDictionaryLog: true,
  // Small, so that compaction also runs (and gets killed) now and then.
  fileDictionaryRewriteThreshold: 5,
});
const say = (line: string): void => void process.stdout.write(line + '\n');
const live = (await env.list('')).filter((n) => n.startsWith('f'));
say(['ready', ...live].join(' '));
for (let i = 0; ; i++) {
  const r = next() % 10;
  if (r < 6 || live.length < 3) {
    const name = `f${process.pid}-${i}`;
    const size = next() % 20_000;
    const fileSeed = next();
    say(`start create ${name} ${size} ${fileSeed}`);
    const f = await env.create(name);
    await f.append(contentFor(fileSeed, size));
    await f.sync();
    await f.close();
    live.push(name);
  } else if (r < 8) {
    const from = live.splice(next() % live.length, 1)[0]!;
    const to = next() % 2 === 0 && live.length > 0 ? live.splice(next() % live.length, 1)[0]! : `f${process.pid}-${i}-r`;
    say(`start rename ${from} ${to}`);
    await env.rename(from, to);
    live.push(to);
  } else {
    const name = live.splice(next() % live.length, 1)[0]!;
    say(`start remove ${name}`);
    await env.remove(name);
  }
  say('ok');
}
