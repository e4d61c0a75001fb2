import { resolve } from 'node:path';
import { formatDuration, parseDuration } from './duration.js';
import { HOST_PORT_FORMS, parseHostPort } from '../util/host-port.js';
import { SIZE_FORMS, SizeError, formatSize, parseSize } from './size.js';

/*
 * What a single setting accepts. A validator knows nothing of where the value came from:
 * the TOML reader and the embedded-options reader wrap its plain Error into CONFIG_INVALID
 * naming the setting their own way, so one validator gives both the same rule and wording.
 */

export interface Context {
  /** Relative paths resolve against it: the config file's directory, or the process's cwd for embedded options. */
  readonly baseDir: string;
}

export interface TomlKinds {
  string: string;
  boolean: boolean;
  integer: bigint;
}
export type Kind = keyof TomlKinds;

/** Said in "must be …" errors; the same in both readers. */
export const KIND_NAMES: Record<Kind, string> = {
  string: 'a string',
  boolean: 'a boolean (true or false)',
  integer: 'an integer',
};

export interface Validator<K extends Kind = Kind> {
  readonly kind: K;
  /** What is accepted, quoted in every error about the key. */
  readonly allowed: string;
  /** Never echo the value (passwords, tokens); `convert`'s messages must not contain it either. */
  readonly secret?: boolean;
  /** A value of the right TOML type → the config value; throws a plain Error saying why not. */
  convert(value: TomlKinds[K], ctx: Context): unknown;
  /** JS options only: what is accepted there, when it differs from `allowed`. */
  readonly optionAllowed?: string;
  /** JS options only: a JS number is accepted too (durations: milliseconds); throws like `convert`. */
  fromNumber?(value: number): unknown;
  /** A string key that takes a TOML integer too (sizes: bytes); throws like `convert`. */
  fromInteger?(value: bigint): unknown;
}

export function text(allowed = 'a non-empty string'): Validator<'string'> {
  return {
    kind: 'string',
    allowed,
    convert: (v) => {
      if (v === '') throw new Error('must not be empty');
      return v;
    },
  };
}

export function oneOf(values: readonly string[]): Validator<'string'> {
  return {
    kind: 'string',
    allowed: values.join(' | '),
    convert: (v) => {
      if (!values.includes(v)) throw new Error('not one of the allowed values');
      return v;
    },
  };
}

export function flag(): Validator<'boolean'> {
  return { kind: 'boolean', allowed: 'true | false', convert: (v) => v };
}

export function integer(min: number, max = Number.MAX_SAFE_INTEGER): Validator<'integer'> {
  return {
    kind: 'integer',
    allowed: max === Number.MAX_SAFE_INTEGER ? `an integer >= ${min}` : `an integer from ${min} to ${max}`,
    convert: (v) => {
      if (v < BigInt(min) || v > BigInt(max)) throw new Error('out of range');
      return Number(v);
    },
  };
}

export function duration(minMs: number): Validator<'string'> {
  const allowed = `a duration of at least ${formatDuration(minMs)}, e.g. "168h", "7d", "30m", "90s", "1h30m"`;
  return {
    kind: 'string',
    allowed,
    optionAllowed: `${allowed}, or a number of milliseconds >= ${minMs}`,
    convert: (v) => {
      const ms = parseDuration(v);
      if (ms < minMs) throw new Error(`shorter than ${formatDuration(minMs)}`);
      return ms;
    },
    fromNumber: (n) => {
      if (!Number.isSafeInteger(n)) throw new Error('not a whole number of milliseconds');
      if (n < minMs) throw new Error(`shorter than ${formatDuration(minMs)}`);
      return n;
    },
  };
}

/**
 * A byte size: an integer of bytes or a string such as "512MiB" (src/config/size.ts). Without
 * `max` the range is open; the minimum is then also shown in bytes, the unit the code uses.
 */
export function size(min: number, max?: number): Validator<'string'> {
  const range = max === undefined ? `at least ${formatSize(min)} (${min} bytes)` : `from ${formatSize(min)} to ${formatSize(max)}`;
  const top = max ?? Number.MAX_SAFE_INTEGER;
  const check = (bytes: number): number => {
    if (bytes < min || bytes > top) throw new Error(`${formatSize(bytes)} is out of range`);
    return bytes;
  };
  return {
    kind: 'string',
    allowed: `${SIZE_FORMS}; ${range}`,
    convert: (v) => {
      try {
        return check(parseSize(v));
      } catch (err) {
        // `allowed` already lists the forms; the message need not say them twice.
        throw err instanceof SizeError ? new Error(err.why) : err;
      }
    },
    fromInteger: (v) => {
      if (v < 0n) throw new Error('negative sizes are not allowed');
      return check(v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(v));
    },
    // Embedded options pass bytes as a JS number, as they always have.
    fromNumber: (n) => {
      if (!Number.isSafeInteger(n)) throw new Error('not a whole number of bytes');
      if (n < 0) throw new Error('negative sizes are not allowed');
      return check(n);
    },
  };
}

/** Redis's maxmemory-clients form: a size, or a percentage ("10%", of the machine's memory here: tdekv has no maxmemory). */
export function sizeOrPercent(): Validator<'string'> {
  const bytes = size(0);
  return {
    kind: 'string',
    allowed: `a percentage from 1% to 100% of the machine's memory, e.g. "10%", or ${SIZE_FORMS}; 0 means no limit`,
    convert: (v, ctx) => {
      const m = /^\s*(\d+(?:\.\d+)?)\s*%\s*$/.exec(v);
      if (m === null) return { bytes: bytes.convert(v, ctx) as number };
      const percent = Number(m[1]);
      if (percent < 1 || percent > 100) throw new Error('out of range');
      return { percent };
    },
    fromInteger: (v) => ({ bytes: bytes.fromInteger!(v) as number }),
    fromNumber: (n) => ({ bytes: bytes.fromNumber!(n) as number }),
  };
}

/** Redis's `client-output-buffer-limit` line for its `normal` class: "[normal] <hard> <soft> <soft-seconds>". */
export function outputBufferLimit(): Validator<'string'> {
  const bytes = size(0);
  return {
    kind: 'string',
    allowed: 'Redis\'s form for normal clients, "normal <hard> <soft> <soft-seconds>" (the word "normal" may be left out), e.g. "normal 256MiB 64MiB 60"; sizes as elsewhere, 0 turns a limit off',
    convert: (v, ctx) => {
      const words = v.trim().split(/\s+/);
      if (words[0]?.toLowerCase() === 'normal') words.shift();
      else if (words.length === 4) throw new Error(`the class "${words[0]}" does not exist in tdekv (it has no replicas and no pub/sub): only "normal"`);
      if (words.length !== 3) throw new Error('expected three values: hard limit, soft limit, soft seconds');
      const secs = /^\d+$/.test(words[2]!) ? Number(words[2]) : NaN;
      if (!Number.isSafeInteger(secs)) throw new Error(`soft seconds "${words[2]}" is not a whole number of seconds`);
      return { hard: bytes.convert(words[0]!, ctx) as number, soft: bytes.convert(words[1]!, ctx) as number, softSeconds: secs };
    },
  };
}

export function hostPort(): Validator<'string'> {
  return { kind: 'string', allowed: HOST_PORT_FORMS, convert: (v) => parseHostPort(v) };
}

export function localPath(): Validator<'string'> {
  return {
    kind: 'string',
    allowed: "a path; a relative path is relative to the config file's directory",
    optionAllowed: "a path; a relative path is relative to the process's current directory",
    convert: (v, ctx) => {
      if (v === '') throw new Error('must not be empty');
      if (v.includes('\0')) throw new Error('contains a NUL character');
      return resolve(ctx.baseDir, v);
    },
  };
}

export function httpUrl(): Validator<'string'> {
  return {
    kind: 'string',
    allowed: 'an http:// or https:// URL, e.g. "https://kms.example.com"',
    convert: (v) => {
      let url: URL;
      try {
        url = new URL(v);
      } catch {
        throw new Error('not a URL');
      }
      if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('not http or https');
      return v;
    },
  };
}
