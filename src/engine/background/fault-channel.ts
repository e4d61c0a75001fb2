import { currentFileFaults, type FileFault } from '../../util/file-io.js';
import { FAULT_CHANNEL_BYTES, FAULT_HEADER_BYTES, deserializeError, serializeError, type SerializedError } from './protocol.js';

/*
 * How a worker thread's file calls meet the main thread's fault injector (tests: file-io.ts's
 * setFileFaults): the worker posts the call and blocks on a shared buffer until the main
 * thread has written the injector's answer there. One channel per worker.
 */

export function newFaultChannel(): SharedArrayBuffer {
  return new SharedArrayBuffer(FAULT_HEADER_BYTES + FAULT_CHANNEL_BYTES);
}

/** Main thread: the injector's answer for one call of the worker owning `channel`. */
export function answerFault(channel: SharedArrayBuffer, op: string, path: string): void {
  let answer: unknown;
  try {
    const injector = currentFileFaults();
    answer = { fault: injector ? injector(op as Parameters<typeof injector>[0], path) : undefined };
  } catch (err) {
    answer = { error: serializeError(err) };
  }
  const bytes = Buffer.from(JSON.stringify(answer), 'utf8');
  const header = new Int32Array(channel, 0, 2);
  Buffer.from(channel, FAULT_HEADER_BYTES, FAULT_CHANNEL_BYTES).set(bytes.subarray(0, FAULT_CHANNEL_BYTES));
  Atomics.store(header, 1, Math.min(bytes.length, FAULT_CHANNEL_BYTES));
  Atomics.store(header, 0, 1);
  Atomics.notify(header, 0);
}

/** Worker: asks the main thread (`post` sends it the call), blocking until it answers. */
export function askOverChannel(channel: SharedArrayBuffer, post: () => void): FileFault {
  const header = new Int32Array(channel, 0, 2);
  Atomics.store(header, 0, 0);
  post();
  Atomics.wait(header, 0, 0);
  const text = Buffer.from(channel, FAULT_HEADER_BYTES, header[1]!).toString('utf8');
  const answer = JSON.parse(text) as { fault?: FileFault; error?: SerializedError };
  if (answer.error) throw deserializeError(answer.error);
  return answer.fault;
}
