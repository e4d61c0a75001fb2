import { randomBytes } from 'node:crypto';

export function freshIv(): Buffer {
  return randomBytes(16);
}

export function randomKey(length: number): Buffer {
  return randomBytes(length);
}

/** Best effort: JS cannot guarantee no copy survives, but the buffers we own are wiped. */
export function zeroize(...buffers: Array<Uint8Array | undefined>): void {
  for (const b of buffers) b?.fill(0);
}
