/**
 * Benchmarks that run each store in its own process (the engine bench, the bulk load): the
 * parent forks a child module with a JSON job in argv[2]; the child reports progress lines
 * and one result (or its error) over IPC, then exits. A store's helper threads must not keep
 * a finished child alive, so the child exits explicitly; the parent kills one that gives no
 * result in time.
 */
import { fork } from 'node:child_process';
import type { BenchContext } from './run.js';

export type ChildMessage<R> = { type: 'progress'; text: string } | { type: 'result'; result: R } | { type: 'error'; message: string };

/** Parent side: runs `childModule` with `job` to completion; rejects with the child's own error message when it fails. */
export function runChild<J, R>(ctx: BenchContext, childModule: string, job: J, timeoutSeconds: number): Promise<R> {
  return new Promise((resolve, reject) => {
    const child = fork(childModule, [JSON.stringify(job)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    let result: R | undefined;
    let failure: string | undefined;
    const timer = setTimeout(() => {
      failure = `no result after ${timeoutSeconds} s (TDEKV_BENCH_CHILD_TIMEOUT_SECONDS); killed`;
      child.kill('SIGKILL');
    }, timeoutSeconds * 1000);
    child.on('message', (m: ChildMessage<R>) => {
      if (m.type === 'progress') ctx.progress(m.text);
      else if (m.type === 'result') result = m.result;
      else failure = m.message;
    });
    child.on('error', (err) => {
      failure ??= err.message;
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (result !== undefined && code === 0) resolve(result);
      else reject(new Error(failure ?? `child exited with ${signal ?? `code ${code}`} and no result`));
    });
  });
}

/** Child side: sends one message to the parent (to stderr when run by hand, without IPC). */
export function sendToParent<R>(message: ChildMessage<R>): Promise<void> {
  return new Promise((resolve) => {
    if (!process.send) {
      process.stderr.write(`${JSON.stringify(message)}\n`);
      resolve();
      return;
    }
    process.send(message, undefined, {}, () => resolve());
  });
}

/** Child side: runs the job from argv[2], reports its result or error, and exits. */
export function serveChild<J, R>(usage: string, run: (job: J) => Promise<R>, beforeResult: () => void = () => undefined): void {
  const main = async (): Promise<void> => {
    const raw = process.argv[2];
    if (raw === undefined) throw new Error(`usage: ${usage}`);
    const result = await run(JSON.parse(raw) as J);
    beforeResult();
    await sendToParent<R>({ type: 'result', result });
  };
  main().then(
    () => process.exit(0),
    async (err: unknown) => {
      await sendToParent<R>({ type: 'error', message: err instanceof Error ? (err.stack ?? err.message) : String(err) });
      process.exit(1);
    },
  );
}
