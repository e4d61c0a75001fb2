/**
 * Encodes replies in RESP2 or RESP3 into one growing buffer that the connection drains with
 * take() once per batch of commands, so a pipelined batch costs one socket write.
 */

import { formatDouble } from './format-number.js';

const INITIAL_CAPACITY = 16 * 1024;
/** Bulks above this are kept as their own buffers, not copied in, until take() joins all once. */
const BIG_BULK = 64 * 1024;
/** take() hands out at most this much as a view and goes on writing after it; beyond it the buffer is handed over and a new one started. */
const COPY_OUT_LIMIT = 8 * 1024;
/** A buffer grown past this by one huge reply is not kept for the next ones. */
const KEEP_CAPACITY_LIMIT = 1024 * 1024;
/**
 * Strings up to this length are tried as ASCII, copied by a JS loop: cheaper than the two
 * native calls (byte length, then UTF-8 write) that other strings need.
 */
const ASCII_PROBE = 64;
/** Type byte, '-', 20 digits, CRLF. */
const MAX_HEADER = 24;

const EMPTY = Buffer.alloc(0);

const LF = 10;
const CR = 13;
const HASH = 35;
const DOLLAR = 36;
const PERCENT = 37;
const STAR = 42;
const PLUS = 43;
const COMMA = 44;
const MINUS = 45;
const COLON = 58;
const EQUALS = 61;
const UNDERSCORE = 95;
const TILDE = 126;

function sanitize(s: string): string {
  // A CR or LF inside a simple string or error would end it early and desynchronise the client.
  return s.includes('\r') || s.includes('\n') ? s.replace(/[\r\n]/g, ' ') : s;
}

export class ReplyWriter {
  /** Switched by HELLO at run time. */
  proto: 2 | 3 = 2;
  #buf = Buffer.allocUnsafe(INITIAL_CAPACITY);
  #len = 0;
  /** Bytes of #buf before this are already in #parts (or were handed out: see #floor). */
  #segStart = 0;
  /**
   * Bytes of #buf before this were handed out by take() as a view, and are never written again:
   * writing goes on after them, and #ensure moves to a new buffer when this one is full. A
   * copy of each small batch of replies (a Buffer from the pool and a copy) was a tenth of an
   * unpipelined request's garbage.
   */
  #floor = 0;
  /** Finished pieces in order (views of #buf and big bulks), when a big bulk was written. */
  #parts: Buffer[] = [];
  #partsLen = 0;

  /** Bytes pending. */
  get length(): number {
    return this.#partsLen + this.#len - this.#segStart;
  }

  /** A position to rewind to (the bytes pending now). */
  mark(): number {
    return this.length;
  }

  /**
   * Drops what was written after `mark`: a command that fails halfway replaces its partial
   * reply with an error, and the stream stays well-formed.
   */
  rewind(mark: number): void {
    let excess = this.length - mark;
    if (excess <= 0) return;
    const fromBuf = Math.min(excess, this.#len - this.#segStart);
    this.#len -= fromBuf;
    excess -= fromBuf;
    while (excess > 0) {
      const last = this.#parts.pop()!;
      if (last.length <= excess) {
        this.#partsLen -= last.length;
        excess -= last.length;
      } else {
        this.#parts.push(last.subarray(0, last.length - excess));
        this.#partsLen -= excess;
        excess = 0;
      }
    }
  }

  /** Everything written since the last take(); the returned buffer is never written to again. */
  take(): Buffer {
    const buf = this.#buf;
    const len = this.#len;
    let out: Buffer;
    if (this.#parts.length > 0) {
      if (len > this.#segStart) this.#parts.push(buf.subarray(this.#segStart, len));
      out = Buffer.concat(this.#parts, this.#partsLen + len - this.#segStart);
      this.#parts = [];
      this.#partsLen = 0;
      // The concat copied everything, so #buf can be reused from #floor on.
      if (buf.length > KEEP_CAPACITY_LIMIT) this.#newBuffer(INITIAL_CAPACITY);
    } else if (len === this.#segStart) {
      out = EMPTY;
    } else if (len - this.#segStart <= COPY_OUT_LIMIT) {
      // A view; writing goes on after it. (#segStart is above #floor when a rewind dropped
      // every part: the bytes between them are gone.)
      out = buf.subarray(this.#segStart, len);
      this.#floor = len;
    } else {
      out = buf.subarray(this.#segStart, len);
      this.#newBuffer(buf.length > KEEP_CAPACITY_LIMIT ? INITIAL_CAPACITY : buf.length);
    }
    this.#len = this.#floor;
    this.#segStart = this.#floor;
    return out;
  }

  #newBuffer(capacity: number): void {
    this.#buf = Buffer.allocUnsafe(capacity);
    this.#floor = 0;
  }

  simple(s: string): void {
    if (s === 'OK') {
      this.#ensure(5);
      const b = this.#buf;
      const p = this.#len;
      b[p] = PLUS;
      b[p + 1] = 79; // O
      b[p + 2] = 75; // K
      b[p + 3] = CR;
      b[p + 4] = LF;
      this.#len = p + 5;
      return;
    }
    this.#line(PLUS, sanitize(s));
  }

  /** msg carries its prefix ("ERR ...", "WRONGTYPE ..."). */
  error(msg: string): void {
    this.#line(MINUS, sanitize(msg));
  }

  integer(n: number | bigint): void {
    if (typeof n === 'number' && Number.isSafeInteger(n)) {
      this.#header(COLON, n);
      return;
    }
    if (typeof n === 'number' && !Number.isInteger(n)) throw new RangeError(`integer reply ${n} is not an integer`);
    this.#line(COLON, BigInt(n).toString());
  }

  /** Strings are sent as UTF-8. */
  bulk(b: Buffer | string): void {
    if (typeof b === 'string') {
      // Up to 3 bytes per UTF-16 unit: short strings certainly fit the copy-in path.
      if (b.length * 3 > BIG_BULK) {
        this.#bulkBuffer(Buffer.from(b, 'utf8'));
        return;
      }
      if (b.length <= ASCII_PROBE && this.#asciiBulk(b)) return;
      const n = Buffer.byteLength(b, 'utf8');
      this.#ensure(n + MAX_HEADER + 2);
      this.#header(DOLLAR, n);
      this.#len += this.#buf.write(b, this.#len, 'utf8');
      this.#crlf();
      return;
    }
    this.#bulkBuffer(b);
  }

  /** A bulk of buf[start, start + length), with no view of it unless it is big (then by reference, as bulk()). */
  bulkAt(buf: Buffer, start: number, length: number): void {
    if (length > BIG_BULK) {
      this.#bulkBuffer(buf.subarray(start, start + length));
      return;
    }
    this.#ensure(length + MAX_HEADER + 2);
    this.#header(DOLLAR, length);
    const out = this.#buf;
    const at = this.#len;
    // Buffer#copy's call costs more than a loop over a short value.
    if (length <= 64) for (let i = 0; i < length; i++) out[at + i] = buf[start + i]!;
    else buf.copy(out, at, start, start + length);
    this.#len = at + length;
    this.#crlf();
  }

  nullBulk(): void {
    if (this.proto === 3) this.#null();
    else this.#header(DOLLAR, -1);
  }

  nullArray(): void {
    if (this.proto === 3) this.#null();
    else this.#header(STAR, -1);
  }

  arrayHeader(n: number): void {
    this.#header(STAR, n);
  }

  /** null items are null bulks. */
  bulkArray(items: ReadonlyArray<Buffer | string | null>): void {
    this.#header(STAR, items.length);
    for (const item of items) {
      if (item === null) this.nullBulk();
      else this.bulk(item);
    }
  }

  /** RESP2 has no maps: a flat array of key, value, key, value... */
  mapHeader(pairs: number): void {
    if (this.proto === 3) this.#header(PERCENT, pairs);
    else this.#header(STAR, pairs * 2);
  }

  setHeader(n: number): void {
    this.#header(this.proto === 3 ? TILDE : STAR, n);
  }

  /** RESP2 has no doubles: a bulk string of the same text, as Redis sends scores. */
  double(n: number): void {
    const s = formatDouble(n);
    if (this.proto === 3) this.#line(COMMA, s);
    else this.bulk(s);
  }

  bool(b: boolean): void {
    if (this.proto === 3) {
      this.#ensure(4);
      const buf = this.#buf;
      const p = this.#len;
      buf[p] = HASH;
      buf[p + 1] = b ? 116 : 102; // t / f
      buf[p + 2] = CR;
      buf[p + 3] = LF;
      this.#len = p + 4;
    } else {
      this.#header(COLON, b ? 1 : 0);
    }
  }

  /** format is RESP3's three-letter type ("txt", "mkd"); RESP2 gets a plain bulk string. */
  verbatim(text: string, format = 'txt'): void {
    if (this.proto !== 3) {
      this.bulk(text);
      return;
    }
    if (format.length !== 3) throw new RangeError(`verbatim format must be 3 characters, got '${format}'`);
    const data = Buffer.from(`${format}:${text}`, 'utf8');
    this.#ensure(MAX_HEADER);
    this.#header(EQUALS, data.length);
    this.#data(data);
  }

  #bulkBuffer(b: Buffer): void {
    this.#header(DOLLAR, b.length);
    this.#data(b);
  }

  /** Bytes then CRLF; big ones by reference, so the caller must not change them before take(). */
  #data(b: Buffer): void {
    if (b.length > BIG_BULK) {
      if (this.#len > this.#segStart) {
        this.#parts.push(this.#buf.subarray(this.#segStart, this.#len));
        this.#partsLen += this.#len - this.#segStart;
      }
      this.#parts.push(b);
      this.#partsLen += b.length;
      this.#segStart = this.#len;
    } else {
      this.#ensure(b.length + 2);
      this.#buf.set(b, this.#len);
      this.#len += b.length;
    }
    this.#crlf();
  }

  /** Writes a short ASCII string as a bulk; false (nothing written) if it is not ASCII. */
  #asciiBulk(s: string): boolean {
    const n = s.length;
    this.#ensure(n + MAX_HEADER + 2);
    const start = this.#len;
    this.#header(DOLLAR, n);
    const b = this.#buf;
    let p = this.#len;
    for (let i = 0; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c > 0x7f) {
        this.#len = start;
        return false;
      }
      b[p++] = c;
    }
    b[p] = CR;
    b[p + 1] = LF;
    this.#len = p + 2;
    return true;
  }

  /** type byte, text, CRLF. */
  #line(type: number, s: string): void {
    if (s.length <= ASCII_PROBE) {
      this.#ensure(s.length + 3);
      const b = this.#buf;
      let p = this.#len + 1;
      let i = 0;
      for (; i < s.length; i++) {
        const c = s.charCodeAt(i);
        if (c > 0x7f) break;
        b[p++] = c;
      }
      if (i === s.length) {
        b[this.#len] = type;
        b[p] = CR;
        b[p + 1] = LF;
        this.#len = p + 2;
        return;
      }
    }
    this.#ensure(Buffer.byteLength(s, 'utf8') + 3);
    this.#buf[this.#len++] = type;
    this.#len += this.#buf.write(s, this.#len, 'utf8');
    this.#crlf();
  }

  #null(): void {
    this.#ensure(3);
    const b = this.#buf;
    const p = this.#len;
    b[p] = UNDERSCORE;
    b[p + 1] = CR;
    b[p + 2] = LF;
    this.#len = p + 3;
  }

  #crlf(): void {
    this.#ensure(2);
    const b = this.#buf;
    b[this.#len] = CR;
    b[this.#len + 1] = LF;
    this.#len += 2;
  }

  /**
   * type byte, decimal n (a safe integer), CRLF. Digits are stored directly: for the few
   * bytes of a header this beats both number-to-string conversion and copying a cached
   * encoding, and needs no table.
   */
  #header(type: number, n: number): void {
    this.#ensure(MAX_HEADER);
    const b = this.#buf;
    let p = this.#len;
    b[p++] = type;
    if (n < 0) {
      b[p++] = MINUS;
      n = -n;
    }
    if (n < 10) {
      b[p++] = 48 + n;
    } else if (n < 100) {
      const tens = (n / 10) | 0;
      b[p] = 48 + tens;
      b[p + 1] = 48 + (n - tens * 10);
      p += 2;
    } else {
      // Powers of ten are exact doubles well past 2^53, so the comparison is exact.
      let digits = 3;
      for (let t = 1000; t <= n; t *= 10) digits++;
      let q = p + digits;
      while (n >= 10) {
        const d = n % 10;
        b[--q] = 48 + d;
        n = (n - d) / 10;
      }
      b[--q] = 48 + n;
      p += digits;
    }
    b[p] = CR;
    b[p + 1] = LF;
    this.#len = p + 2;
  }

  #ensure(n: number): void {
    if (this.#len + n <= this.#buf.length) return;
    const old = this.#buf;
    const live = this.#len - this.#segStart;
    // Full of replies handed out already: a buffer of the same size will do, if the rest fits.
    let capacity = this.#floor > 0 ? old.length : old.length * 2;
    while (capacity < live + n) capacity *= 2;
    const grown = Buffer.allocUnsafe(capacity);
    // Bytes before #segStart are referenced from #parts or handed out, which keeps the old buffer alive.
    old.copy(grown, 0, this.#segStart, this.#len);
    this.#buf = grown;
    this.#floor = 0;
    this.#len = live;
    this.#segStart = 0;
  }
}
