/**
 * Server side of RESP: turns the bytes a client sends into commands, accepting what Redis 7's
 * processMultibulkBuffer/processInlineBuffer accept and failing with the same error texts.
 *
 * Arguments are views into the chunks passed to push(), never copies, except for an
 * argument that straddles two chunks (copied once into a buffer of its own), quoted inline
 * arguments (decoded), and the arguments of a command that is still incomplete when a chunk
 * ends (copied into one compact buffer, see PendingArgs). So the caller must not reuse or
 * modify a chunk after pushing it.
 */

import { bufferView } from '../../util/buffer-view.js';
import { parseRedisInteger } from './format-number.js';

const LF = 10;
const CR = 13;
const STAR = 42;
const DOLLAR = 36;

/** Message is the text Redis replies after "ERR ". The connection is closed after it. */
export class ProtocolError extends Error {
  override name = 'ProtocolError';
}

export interface RequestParserOptions {
  /** Largest bulk argument (Redis's proto-max-bulk-len). */
  maxBulkLength: number;
  /** Largest argument count; default 1024*1024. */
  maxMultibulkLength?: number;
  /** Longest inline command line and count line (Redis's PROTO_INLINE_MAX_SIZE); default 64 KiB. */
  maxInlineLength?: number;
}

const view = bufferView;

/**
 * The arguments of a command that spans several chunks. A view per argument costs ~100 bytes
 * of heap and keeps its whole chunk alive: a client sending an unfinished array of a million
 * one-byte elements made the server hold ~110 bytes per byte sent (40 such clients: 3.6 GB).
 * Here they cost their own bytes plus 8 bytes each, and the chunks can be freed.
 */
const BIG_ARG = 16 * 1024;

class PendingArgs {
  #data = Buffer.alloc(0);
  #used = 0;
  #ends = new Float64Array(0);
  #count = 0;
  /** Arguments of BIG_ARG bytes or more are kept as they are (index → buffer): copying them again would double a large value. */
  #big: Map<number, Buffer> | undefined;
  #bigBytes = 0;

  get count(): number {
    return this.#count;
  }

  /** Bytes held (the data and the offsets), for the client's memory accounting. */
  get bytes(): number {
    return this.#data.length + this.#ends.byteLength + this.#bigBytes;
  }

  add(args: Buffer[]): void {
    let need = this.#used;
    for (const a of args) if (a.length < BIG_ARG) need += a.length;
    if (need > this.#data.length) {
      const grown = Buffer.allocUnsafe(Math.max(need, this.#data.length * 2));
      this.#data.copy(grown, 0, 0, this.#used);
      this.#data = grown;
    }
    if (this.#count + args.length > this.#ends.length) {
      const grown = new Float64Array(Math.max(this.#count + args.length, this.#ends.length * 2));
      grown.set(this.#ends.subarray(0, this.#count));
      this.#ends = grown;
    }
    for (const a of args) {
      if (a.length >= BIG_ARG) {
        (this.#big ??= new Map()).set(this.#count, a);
        this.#bigBytes += a.length;
      } else this.#used += a.copy(this.#data, this.#used);
      this.#ends[this.#count++] = this.#used;
    }
  }

  /** The arguments as views of the compact buffer, followed by `rest`; empties this. */
  take(rest: Buffer[]): Buffer[] {
    const out: Buffer[] = new Array<Buffer>(this.#count + rest.length);
    let start = 0;
    for (let i = 0; i < this.#count; i++) {
      const end = this.#ends[i]!;
      out[i] = this.#big?.get(i) ?? view(this.#data, start, end);
      start = end;
    }
    for (let i = 0; i < rest.length; i++) out[this.#count + i] = rest[i]!;
    this.#data = Buffer.alloc(0);
    this.#used = 0;
    this.#ends = new Float64Array(0);
    this.#count = 0;
    this.#big = undefined;
    this.#bigBytes = 0;
    return out;
  }
}

const INVALID_MULTIBULK = 'Protocol error: invalid multibulk length';
const INVALID_BULK = 'Protocol error: invalid bulk length';
const UNAUTHENTICATED_MULTIBULK = 10;
const UNAUTHENTICATED_BULK = 16 * 1024;

function isSpace(c: number): boolean {
  // C's isspace: space, \t, \n, \v, \f, \r.
  return c === 32 || (c >= 9 && c <= 13);
}

/** An unquoted inline argument ends at these only; \v and \f belong to it, as in sdssplitargs. */
function endsUnquoted(c: number): boolean {
  return c === 32 || c === 9 || c === 10 || c === 13;
}

function hexValue(c: number | undefined): number {
  if (c === undefined) return -1;
  if (c >= 48 && c <= 57) return c - 48;
  const l = c | 0x20;
  return l >= 97 && l <= 102 ? l - 87 : -1;
}

function unbalanced(): never {
  throw new ProtocolError('Protocol error: unbalanced quotes in request');
}

/**
 * Splits one inline line as Redis's sdssplitargs does: blanks separate arguments; "..."
 * decodes \n \r \t \b \a \xHH and \<any> as that character; '...' decodes only \'; a
 * closing quote must be followed by a blank or the end of the line.
 *
 * Redis stops at a NUL byte (C strings) and in fact never finds the end of a line that
 * holds one; here NUL is an ordinary byte.
 */
export function splitInlineArgs(line: Buffer, start: number, end: number): Buffer[] {
  const args: Buffer[] = [];
  let p = start;
  for (;;) {
    while (p < end && isSpace(line[p]!)) p++;
    if (p >= end) return args;
    let q = p;
    while (q < end) {
      const c = line[q]!;
      if (endsUnquoted(c) || c === 34 || c === 39) break;
      q++;
    }
    if (q >= end || endsUnquoted(line[q]!)) {
      args.push(view(line, p, q));
      p = q;
      continue;
    }
    // A quote: decode the rest of this argument byte by byte (telnet users only, not hot).
    const out: number[] = [];
    for (let k = p; k < q; k++) out.push(line[k]!);
    p = q;
    let mode = 0; // 0 unquoted, 1 inside "...", 2 inside '...'
    for (;;) {
      if (mode === 0) {
        if (p >= end) break;
        const c = line[p]!;
        if (endsUnquoted(c)) break;
        if (c === 34) mode = 1;
        else if (c === 39) mode = 2;
        else out.push(c);
        p++;
      } else {
        if (p >= end) unbalanced();
        const c = line[p]!;
        const next = p + 1 < end ? line[p + 1] : undefined;
        if (mode === 1 && c === 92 && next !== undefined) {
          const hi = next === 120 ? hexValue(line[p + 2]) : -1;
          const lo = hi >= 0 && p + 3 < end ? hexValue(line[p + 3]) : -1;
          if (lo >= 0) {
            out.push(hi * 16 + lo);
            p += 4;
          } else {
            out.push(
              next === 110 ? 10 : next === 114 ? 13 : next === 116 ? 9 : next === 98 ? 8 : next === 97 ? 7 : next,
            );
            p += 2;
          }
        } else if (mode === 2 && c === 92 && next === 39) {
          out.push(39);
          p += 2;
        } else if (c === (mode === 1 ? 34 : 39)) {
          if (next !== undefined && !isSpace(next)) unbalanced();
          p++;
          break;
        } else {
          out.push(c);
          p++;
        }
      }
    }
    args.push(Buffer.from(out));
  }
}

/** Called with each complete command; returning false stops parsing until resume(). */
export type CommandCallback = (args: Buffer[]) => unknown;

/** Commands of at most this many arguments get an array of their size up front. */
const PRESIZED_ARGS = 16;
/** #args between commands: never written (a command's count line puts a fresh array there first). */
const NO_ARGS: Buffer[] = Object.freeze([]) as unknown as Buffer[];

export class RequestParser {
  readonly #maxBulk: number;
  readonly #maxMultibulk: number;
  /** Redis 7's tighter limits until the client authenticates (see restrictUnauthenticated). */
  #unauthenticated = false;
  readonly #maxInline: number;
  /** Arguments the current multibulk command still expects; 0 between commands. */
  #remaining = 0;
  /** Length of the bulk whose data comes next, or -1 when its `$` line comes next. */
  #bulkLen = -1;
  /**
   * Arguments of the current command taken from the chunk being parsed (views into it): the
   * first #filled entries. Sized to the command's count when that is small: an array grown by
   * push() from empty allocated room for 17, a third of a pipelined GET's garbage.
   */
  #args: Buffer[] = NO_ARGS;
  #filled = 0;
  /** Arguments of the current command from earlier chunks, compacted. */
  readonly #spilled = new PendingArgs();
  /** The command callback asked to stop: input not yet parsed waits here until resume(). */
  #stopped = false;
  #backlog: Buffer[] = [];
  #backlogBytes = 0;
  /**
   * The start of an element (a line or a bulk's data) that a chunk cut off, kept as the
   * chunks it arrived in and joined once when complete, so a big bulk costs one copy.
   * Invariant: a pending line holds no terminator, except a '\r' as its last byte.
   */
  #pending: Buffer[] = [];
  #pendingLen = 0;
  /** The value of the last count line read by #countLine (avoids an object per line). */
  #count = 0;
  #failed: ProtocolError | undefined;

  /**
   * While on, requests are limited as Redis 7 limits a client that has not authenticated
   * (at most 10 arguments of at most 16 KiB): without the password nobody can make the
   * server buffer a request of max-request-size.
   */
  restrictUnauthenticated(on: boolean): void {
    this.#unauthenticated = on;
  }

  constructor(options: RequestParserOptions) {
    this.#maxBulk = options.maxBulkLength;
    this.#maxMultibulk = options.maxMultibulkLength ?? 1024 * 1024;
    this.#maxInline = options.maxInlineLength ?? 64 * 1024;
  }

  /**
   * Bytes the client sent that are not parsed yet (Redis's query buffer, `qbuf`): the start of
   * an unfinished element, and input waiting while the parser is stopped.
   */
  get pendingBytes(): number {
    return this.#pendingLen + this.#backlogBytes;
  }

  /** Bytes the parsed arguments of an unfinished command hold (Redis's `argv-mem`). */
  get argvBytes(): number {
    return this.#spilled.bytes;
  }

  /** Whether input waits for resume(). */
  get stopped(): boolean {
    return this.#stopped;
  }

  /**
   * Feeds bytes; calls onCommand for each complete command, in order (args[0] is the command
   * name, as sent). When onCommand returns false, parsing stops after that command: the rest
   * of the chunk, and every chunk pushed later, waits until resume(). Throws ProtocolError on
   * malformed input, after delivering the commands before it; the parser then refuses all
   * further input, as Redis closes the connection. If onCommand throws, the exception
   * propagates and the rest of the chunk is lost.
   */
  push(chunk: Buffer, onCommand: CommandCallback): void {
    if (this.#failed !== undefined) throw this.#failed;
    if (chunk.length === 0) return;
    if (this.#stopped) {
      this.#backlog.push(chunk);
      this.#backlogBytes += chunk.length;
      return;
    }
    this.#guarded(() => this.#feed(chunk, onCommand));
  }

  /** Parses the input that waited since onCommand asked to stop, until it asks again. */
  resume(onCommand: CommandCallback): void {
    if (this.#failed !== undefined) throw this.#failed;
    this.#stopped = false;
    const chunks = this.#backlog;
    this.#backlog = [];
    this.#backlogBytes = 0;
    this.#guarded(() => {
      for (let i = 0; i < chunks.length; i++) {
        this.#feed(chunks[i]!, onCommand);
        if (this.#stopped) {
          // #feed kept the rest of chunk i; the later chunks follow it.
          for (let j = i + 1; j < chunks.length; j++) {
            this.#backlog.push(chunks[j]!);
            this.#backlogBytes += chunks[j]!.length;
          }
          return;
        }
      }
    });
  }

  #guarded(parse: () => void): void {
    try {
      parse();
    } catch (e) {
      if (e instanceof ProtocolError) this.#failed = e;
      throw e;
    }
  }

  #feed(chunk: Buffer, onCommand: CommandCallback): void {
    let pos = 0;
    if (this.#pendingLen > 0) {
      pos = this.#completePending(chunk, onCommand);
      if (pos < 0) return this.#spill();
    }
    if (this.#stopped) return this.#keepForLater(chunk, pos);
    this.#parse(chunk, pos, onCommand);
    this.#spill();
  }

  /** The chunk is done with: arguments of an unfinished command are copied out of it. */
  #spill(): void {
    if (this.#filled === 0) return;
    this.#spilled.add(this.#filled === this.#args.length ? this.#args : this.#args.slice(0, this.#filled));
    this.#args = [];
    this.#filled = 0;
  }

  #keepForLater(buf: Buffer, pos: number): void {
    if (pos >= buf.length) return;
    this.#backlog.push(pos === 0 ? buf : buf.subarray(pos));
    this.#backlogBytes += buf.length - pos;
  }

  /** Finishes the pending element with the start of chunk; returns where the rest begins, or -1 if chunk was not enough. */
  #completePending(chunk: Buffer, onCommand: CommandCallback): number {
    const pending = this.#pending;
    const have = this.#pendingLen;
    if (this.#remaining > 0 && this.#bulkLen >= 0) {
      const len = this.#bulkLen;
      const need = len + 2 - have;
      if (chunk.length < need) return this.#keep(chunk);
      // Redis skips the two bytes after a bulk without looking at them; so do we.
      const arg =
        have >= len
          ? pending.length === 1
            ? pending[0]!.subarray(0, len)
            : Buffer.concat(pending, len)
          : Buffer.concat([...pending, chunk.subarray(0, len - have)], len);
      this.#pending = [];
      this.#pendingLen = 0;
      this.#bulkDone(arg, onCommand);
      return need;
    }
    let need: number;
    if (this.#remaining === 0 && pending[0]![0] !== STAR) {
      need = chunk.indexOf(LF) + 1;
      if (need === 0) return this.#keep(chunk);
    } else {
      const last = pending[pending.length - 1]!;
      if (last[last.length - 1] === CR) need = 1;
      else {
        const cr = chunk.indexOf(CR);
        if (cr < 0 || cr === chunk.length - 1) return this.#keep(chunk);
        need = cr + 2;
      }
    }
    pending.push(chunk.subarray(0, need));
    const line = Buffer.concat(pending, have + need);
    this.#pending = [];
    this.#pendingLen = 0;
    // The line is exactly one element, so this consumes all of it and keeps nothing.
    this.#parse(line, 0, onCommand);
    return need;
  }

  #keep(chunk: Buffer): -1 {
    this.#pending.push(chunk);
    this.#pendingLen += chunk.length;
    this.#checkPendingLine();
    return -1;
  }

  #stash(buf: Buffer, pos: number): void {
    // An empty piece would hide the element's first byte, which tells lines apart.
    if (pos >= buf.length) return;
    this.#pending.push(buf.subarray(pos));
    this.#pendingLen += buf.length - pos;
    this.#checkPendingLine();
  }

  /** Redis gives up on a line that is still unterminated after PROTO_INLINE_MAX_SIZE bytes. */
  #checkPendingLine(): void {
    if (this.#remaining > 0 && this.#bulkLen >= 0) return;
    const last = this.#pending[this.#pending.length - 1]!;
    const endsWithCr = last[last.length - 1] === CR;
    if (this.#remaining === 0 && this.#pending[0]![0] !== STAR) {
      if (this.#pendingLen - (endsWithCr ? 1 : 0) > this.#maxInline) {
        throw new ProtocolError('Protocol error: too big inline request');
      }
    } else if (!endsWithCr && this.#pendingLen > this.#maxInline) {
      throw new ProtocolError(
        this.#remaining === 0
          ? 'Protocol error: too big mbulk count string'
          : 'Protocol error: too big bulk count string',
      );
    }
  }

  #bulkDone(arg: Buffer, onCommand: CommandCallback): void {
    this.#args[this.#filled++] = arg;
    this.#bulkLen = -1;
    if (--this.#remaining === 0) {
      // Every entry is filled by now: the array was sized to the count, or grew from empty.
      const args = this.#spilled.count > 0 ? this.#spilled.take(this.#args) : this.#args;
      this.#args = NO_ARGS;
      this.#filled = 0;
      if (onCommand(args) === false) this.#stopped = true;
    }
  }

  #parse(buf: Buffer, pos: number, onCommand: CommandCallback): void {
    const end = buf.length;
    while (pos < end) {
      if (this.#stopped) return this.#keepForLater(buf, pos);
      if (this.#remaining === 0) {
        if (buf[pos] !== STAR) {
          const lf = buf.indexOf(LF, pos);
          if (lf < 0) return this.#stash(buf, pos);
          const lineEnd = lf > pos && buf[lf - 1] === CR ? lf - 1 : lf;
          // Redis checks this only while the line is unterminated, so whether a long line
          // passes would depend on how the bytes arrived; here it never does.
          if (lineEnd - pos > this.#maxInline) throw new ProtocolError('Protocol error: too big inline request');
          const args = splitInlineArgs(buf, pos, lineEnd);
          pos = lf + 1;
          if (args.length > 0 && onCommand(args) === false) this.#stopped = true;
          continue;
        }
        const next = this.#countLine(buf, pos + 1);
        if (next === 0) return this.#stash(buf, pos);
        if (next < 0 || this.#count > this.#maxMultibulk) throw new ProtocolError(INVALID_MULTIBULK);
        if (this.#unauthenticated && this.#count > UNAUTHENTICATED_MULTIBULK) throw new ProtocolError('Protocol error: unauthenticated multibulk length');
        pos = next;
        // Zero and negative counts (*0, *-1) are empty commands that Redis skips.
        if (this.#count > 0) {
          this.#remaining = this.#count;
          // A big count is not trusted with memory before its arguments arrive.
          this.#args = this.#count <= PRESIZED_ARGS ? new Array<Buffer>(this.#count) : [];
          this.#filled = 0;
        }
        continue;
      }
      if (this.#bulkLen < 0) {
        if (buf[pos] !== DOLLAR) {
          // Redis complains only once the whole line is there.
          const cr = buf.indexOf(CR, pos);
          if (cr < 0 || cr === end - 1) return this.#stash(buf, pos);
          throw new ProtocolError(`Protocol error: expected '$', got '${String.fromCharCode(buf[pos]!)}'`);
        }
        const next = this.#countLine(buf, pos + 1);
        if (next === 0) return this.#stash(buf, pos);
        if (next < 0 || this.#count < 0 || this.#count > this.#maxBulk) throw new ProtocolError(INVALID_BULK);
        if (this.#unauthenticated && this.#count > UNAUTHENTICATED_BULK) throw new ProtocolError('Protocol error: unauthenticated bulk length');
        this.#bulkLen = this.#count;
        pos = next;
      }
      const len = this.#bulkLen;
      if (end - pos < len + 2) return this.#stash(buf, pos);
      const arg = view(buf, pos, pos + len);
      pos += len + 2;
      this.#bulkDone(arg, onCommand);
    }
  }

  /**
   * Reads the integer of a `*` or `$` line starting at start (after the type byte) into
   * #count. Returns the position after the line, 0 while the line is incomplete, -1 when
   * the integer is not one string2ll accepts. Like Redis, the line ends at the first '\r'
   * and the byte after it is skipped unseen.
   */
  #countLine(buf: Buffer, start: number): number {
    const end = buf.length;
    // Fast path, nearly every line: 1 to 15 plain digits, so no overflow and no native call.
    const limit = Math.min(end, start + 15);
    let i = start;
    let v = 0;
    for (; i < limit; i++) {
      const c = buf[i]!;
      if (c < 48 || c > 57) break;
      v = v * 10 + (c - 48);
    }
    if (i > start && i < end - 1 && buf[i] === CR && (buf[start] !== 48 || i === start + 1)) {
      this.#count = v;
      return i + 2;
    }
    const cr = buf.indexOf(CR, start);
    if (cr < 0 || cr === end - 1) return 0;
    const n = parseRedisInteger(buf.subarray(start, cr));
    if (n === undefined) return -1;
    // Precision past 2^53 does not matter: such counts fail every limit check either way.
    this.#count = Number(n);
    return cr + 2;
  }
}
