import { checkedInt64, decimalArg, int64Arg, intArg, storedInt64, ZERO } from './args.js';
import { isWord, NOT_FLOAT, replyError, spec, SYNTAX_ERROR, type CommandContext, type CommandSpec } from './command.js';
import { stringOf, type KeyMeta } from '../keyspace/keyspace.js';
import { addDecimalFloats, formatDecimalFloat } from './decimal-float.js';
import { expireAtFrom, expiryUnit, needValue } from './expiry-args.js';

/** Redis's proto-max-bulk-len default: the largest string SETRANGE/APPEND may build. */
const MAX_STRING = 512 * 1024 * 1024;

function get(ctx: CommandContext, args: Buffer[]): void {
  // Copied into the reply from where it lies: no Buffer for the value.
  const at = ctx.ks.valueAt;
  const n = ctx.ks.readStringAt(args[1]!, at);
  if (n < 0) ctx.out.nullBulk();
  else ctx.out.bulkAt(at.buf, at.start, n);
}

function set(ctx: CommandContext, args: Buffer[]): void {
  const key = args[1]!;
  const value = args[2]!;
  let nx = false;
  let xx = false;
  let returnOld = false;
  let keepTtl = false;
  let expireAt: number | undefined;
  for (let i = 3; i < args.length; i++) {
    const a = args[i]!;
    const unit = expiryUnit(a);
    if (unit !== undefined) {
      if (expireAt !== undefined || keepTtl) replyError(SYNTAX_ERROR);
      // The clock is read only for an expiry: a plain SET does not need it.
      expireAt = expireAtFrom(unit, needValue(args, ++i), ctx.ks.now(), 'set');
    } else if (isWord(a, 'nx') && !xx) nx = true;
    else if (isWord(a, 'xx') && !nx) xx = true;
    else if (isWord(a, 'get')) returnOld = true;
    else if (isWord(a, 'keepttl') && expireAt === undefined) keepTtl = true;
    else replyError(SYNTAX_ERROR);
  }
  // Only SET ... GET needs the old value; a plain SET needs whether the key exists, its type and expiry.
  let existing: KeyMeta | undefined;
  let old: Buffer | undefined;
  if (returnOld) {
    const r = ctx.ks.lookup(key);
    old = stringOf(r);
    existing = r;
  } else existing = ctx.ks.lookupMeta(key);
  if ((nx && existing !== undefined) || (xx && existing === undefined)) {
    if (returnOld) replyBulkOrNull(ctx, old);
    else ctx.out.nullBulk();
    return;
  }
  writeString(ctx, key, value, expireAt ?? (keepTtl ? 'keep' : 0), existing);
  if (returnOld) replyBulkOrNull(ctx, old);
  else ctx.out.simple('OK');
}

/** Sets a string; an expiry already in the past deletes the key, as in Redis. */
function writeString(ctx: CommandContext, key: Buffer, value: Buffer, expireAt: number | 'keep', existing: KeyMeta | undefined): void {
  if (typeof expireAt === 'number' && expireAt !== 0 && expireAt <= ctx.ks.now()) {
    ctx.ks.delete(key);
    return;
  }
  ctx.ks.setString(key, value, expireAt, existing);
}

function replyBulkOrNull(ctx: CommandContext, v: Buffer | undefined): void {
  if (v === undefined) ctx.out.nullBulk();
  else ctx.out.bulk(v);
}

function setnx(ctx: CommandContext, args: Buffer[]): void {
  const existing = ctx.ks.lookupMeta(args[1]!);
  if (existing !== undefined) return ctx.out.integer(0);
  ctx.ks.setString(args[1]!, args[2]!, 0, existing);
  ctx.out.integer(1);
}

function setexCommand(unit: 'ex' | 'px', name: string) {
  return (ctx: CommandContext, args: Buffer[]): void => {
    const at = expireAtFrom(unit, args[2]!, ctx.ks.now(), name);
    writeString(ctx, args[1]!, args[3]!, at, ctx.ks.lookupMeta(args[1]!));
    ctx.out.simple('OK');
  };
}

function mget(ctx: CommandContext, args: Buffer[]): void {
  ctx.out.arrayHeader(args.length - 1);
  for (let i = 1; i < args.length; i++) {
    const r = ctx.ks.read(args[i]!);
    if (r?.type === 'string') ctx.out.bulk(r.value);
    else ctx.out.nullBulk();
  }
}

function pairsOf(args: Buffer[], name: string): void {
  if ((args.length - 1) % 2 !== 0) replyError(`ERR wrong number of arguments for '${name}' command`);
}

function mset(ctx: CommandContext, args: Buffer[]): void {
  pairsOf(args, 'mset');
  for (let i = 1; i < args.length; i += 2) ctx.ks.setString(args[i]!, args[i + 1]!, 0, ctx.ks.lookupMeta(args[i]!));
  ctx.out.simple('OK');
}

function msetnx(ctx: CommandContext, args: Buffer[]): void {
  pairsOf(args, 'msetnx');
  for (let i = 1; i < args.length; i += 2) if (ctx.ks.lookup(args[i]!) !== undefined) return ctx.out.integer(0);
  for (let i = 1; i < args.length; i += 2) ctx.ks.setString(args[i]!, args[i + 1]!, 0, ctx.ks.lookupMeta(args[i]!));
  ctx.out.integer(1);
}

function getdel(ctx: CommandContext, args: Buffer[]): void {
  const v = ctx.ks.getString(args[1]!);
  if (v !== undefined) ctx.ks.delete(args[1]!);
  replyBulkOrNull(ctx, v);
}

function getex(ctx: CommandContext, args: Buffer[]): void {
  const key = args[1]!;
  let expireAt: number | undefined;
  let persist = false;
  for (let i = 2; i < args.length; i++) {
    const unit = expiryUnit(args[i]!);
    if (unit !== undefined && expireAt === undefined && !persist) expireAt = expireAtFrom(unit, needValue(args, ++i), ctx.ks.now(), 'getex');
    else if (isWord(args[i]!, 'persist') && expireAt === undefined && !persist) persist = true;
    else replyError(SYNTAX_ERROR);
  }
  const r = ctx.ks.lookup(key);
  if (r === undefined) return ctx.out.nullBulk();
  const value = stringOf(r)!;
  ctx.out.bulk(value);
  if (expireAt !== undefined) ctx.ks.setExpiry(key, r, expireAt);
  else if (persist && r.expireAt !== 0) ctx.ks.setExpiry(key, r, 0);
}

function getset(ctx: CommandContext, args: Buffer[]): void {
  const existing = ctx.ks.lookup(args[1]!);
  const old = stringOf(existing);
  ctx.ks.setString(args[1]!, args[2]!, 0, existing);
  replyBulkOrNull(ctx, old);
}

function append(ctx: CommandContext, args: Buffer[]): void {
  const existing = ctx.ks.lookup(args[1]!);
  const old = stringOf(existing);
  const next = old === undefined ? Buffer.from(args[2]!) : Buffer.concat([old, args[2]!]);
  if (next.length > MAX_STRING) replyError('ERR string exceeds maximum allowed size (proto-max-bulk-len)');
  ctx.ks.setString(args[1]!, next, 'keep', existing);
  ctx.out.integer(next.length);
}

function strlen(ctx: CommandContext, args: Buffer[]): void {
  ctx.out.integer(ctx.ks.getString(args[1]!)?.length ?? 0);
}

function getrange(ctx: CommandContext, args: Buffer[]): void {
  let start = intArg(args[2]!);
  let end = intArg(args[3]!);
  const v = ctx.ks.getString(args[1]!) ?? Buffer.alloc(0);
  const len = v.length;
  if (start < 0 && end < 0 && start > end) return ctx.out.bulk('');
  if (start < 0) start = len + start;
  if (end < 0) end = len + end;
  if (start < 0) start = 0;
  if (end < 0) end = 0;
  if (end >= len) end = len - 1;
  if (len === 0 || start > end) return ctx.out.bulk('');
  ctx.out.bulk(v.subarray(start, end + 1));
}

function setrange(ctx: CommandContext, args: Buffer[]): void {
  const key = args[1]!;
  const offset = intArg(args[2]!);
  const value = args[3]!;
  if (offset < 0) replyError('ERR offset is out of range');
  const existing = ctx.ks.lookup(key);
  const old = stringOf(existing) ?? Buffer.alloc(0);
  if (value.length === 0) return ctx.out.integer(old.length);
  if (offset + value.length > MAX_STRING) replyError('ERR string exceeds maximum allowed size (proto-max-bulk-len)');
  const next = Buffer.alloc(Math.max(old.length, offset + value.length));
  old.copy(next);
  value.copy(next, offset);
  ctx.ks.setString(key, next, 'keep', existing);
  ctx.out.integer(next.length);
}

function incrBy(ctx: CommandContext, key: Buffer, by: bigint): void {
  const existing = ctx.ks.lookup(key);
  const current = storedInt64(stringOf(existing));
  const next = checkedInt64(current + by);
  ctx.ks.setString(key, Buffer.from(next.toString(), 'latin1'), 'keep', existing);
  ctx.out.integer(next);
}

function incrbyfloat(ctx: CommandContext, args: Buffer[]): void {
  const key = args[1]!;
  const existing = ctx.ks.lookup(key);
  const raw = stringOf(existing);
  const by = decimalArg(args[2]!, NOT_FLOAT);
  const current = raw === undefined ? ZERO : decimalArg(raw, NOT_FLOAT);
  const next = addDecimalFloats(current, by);
  if (next === undefined) replyError('ERR increment would produce NaN or Infinity');
  const text = formatDecimalFloat(next);
  ctx.ks.setString(key, Buffer.from(text, 'latin1'), 'keep', existing);
  ctx.out.bulk(text);
}

const W = ['write', 'denyoom'] as const;
const K1: [number, number, number] = [1, 1, 1];

export const STRING_COMMANDS: CommandSpec[] = [
  spec('get', 2, ['readonly', 'fast'], K1, 'string', 'Returns the string value of a key.', get),
  spec('set', -3, [...W], K1, 'string', 'Sets the string value of a key, ignoring its type. The key is created if it does not exist.', set),
  spec('setnx', 3, [...W, 'fast'], K1, 'string', 'Set the string value of a key only when the key does not exist.', setnx),
  spec('setex', 4, [...W], K1, 'string', 'Sets the string value and expiration time of a key.', setexCommand('ex', 'setex')),
  spec('psetex', 4, [...W], K1, 'string', 'Sets both string value and expiration time in milliseconds of a key.', setexCommand('px', 'psetex')),
  spec('mget', -2, ['readonly', 'fast'], [1, -1, 1], 'string', 'Atomically returns the string values of one or more keys.', mget),
  spec('mset', -3, [...W], [1, -1, 2], 'string', 'Atomically creates or modifies the string values of one or more keys.', mset),
  spec('msetnx', -3, [...W], [1, -1, 2], 'string', 'Atomically modifies the string values of one or more keys only when all keys do not exist.', msetnx),
  spec('getdel', 2, ['write', 'fast'], K1, 'string', 'Returns the string value of a key after deleting the key.', getdel),
  spec('getex', -2, ['write', 'fast'], K1, 'string', 'Returns the string value of a key after setting its expiration time.', getex),
  spec('getset', 3, [...W, 'fast'], K1, 'string', 'Returns the previous string value of a key after setting it to a new value.', getset),
  spec('append', 3, [...W, 'fast'], K1, 'string', 'Appends a string to the value of a key. Creates the key if it does not exist.', append),
  spec('strlen', 2, ['readonly', 'fast'], K1, 'string', 'Returns the length of a string value.', strlen),
  spec('getrange', 4, ['readonly'], K1, 'string', 'Returns a substring of the string stored at a key.', getrange),
  spec('setrange', 4, [...W], K1, 'string', 'Overwrites a part of a string value with another by an offset. Creates the key if it does not exist.', setrange),
  spec('incr', 2, [...W, 'fast'], K1, 'string', 'Increments the integer value of a key by one.', (ctx, a) => incrBy(ctx, a[1]!, 1n)),
  spec('decr', 2, [...W, 'fast'], K1, 'string', 'Decrements the integer value of a key by one.', (ctx, a) => incrBy(ctx, a[1]!, -1n)),
  spec('incrby', 3, [...W, 'fast'], K1, 'string', 'Increments the integer value of a key by a number.', (ctx, a) => incrBy(ctx, a[1]!, int64Arg(a[2]!))),
  spec('decrby', 3, [...W, 'fast'], K1, 'string', 'Decrements a number from the integer value of a key.', (ctx, a) => {
    const by = int64Arg(a[2]!);
    if (by === -(2n ** 63n)) replyError('ERR decrement would overflow');
    incrBy(ctx, a[1]!, -by);
  }),
  spec('incrbyfloat', 3, [...W, 'fast'], K1, 'string', 'Increment the floating point value of a key by a number.', incrbyfloat),
];
