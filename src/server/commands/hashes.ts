import { hashOf } from '../keyspace/keyspace.js';
import { checkedInt64, decimalArg, int64Arg, storedInt64, ZERO } from './args.js';
import { NOT_FLOAT, replyError, spec, withFields, type CommandContext, type CommandSpec } from './command.js';
import { addDecimalFloats, formatDecimalFloat } from './decimal-float.js';
import { replyScanPage, resumeAfter, scanOptions } from './scan-args.js';

function hset(ctx: CommandContext, args: Buffer[]): void {
  if ((args.length - 2) % 2 !== 0) replyError(`ERR wrong number of arguments for '${args[0]!.toString('latin1').toLowerCase()}' command`);
  const pairs: Array<[Buffer, Buffer]> = [];
  for (let i = 2; i < args.length; i += 2) pairs.push([args[i]!, args[i + 1]!]);
  const added = ctx.ks.hashSet(args[1]!, pairs);
  if (args[0]!.length === 5) ctx.out.simple('OK'); // HMSET
  else ctx.out.integer(added);
}

function hsetnx(ctx: CommandContext, args: Buffer[]): void {
  ctx.out.integer(ctx.ks.hashSet(args[1]!, [[args[2]!, args[3]!]], { onlyNew: true }));
}

function hget(ctx: CommandContext, args: Buffer[]): void {
  const v = ctx.ks.getHash(args[1]!) === undefined ? undefined : ctx.ks.hashGet(args[1]!, args[2]!);
  if (v === undefined) ctx.out.nullBulk();
  else ctx.out.bulk(v);
}

function hmget(ctx: CommandContext, args: Buffer[]): void {
  const exists = ctx.ks.getHash(args[1]!) !== undefined;
  ctx.out.arrayHeader(args.length - 2);
  for (let i = 2; i < args.length; i++) {
    const v = exists ? ctx.ks.hashGet(args[1]!, args[i]!) : undefined;
    if (v === undefined) ctx.out.nullBulk();
    else ctx.out.bulk(v);
  }
}

function hdel(ctx: CommandContext, args: Buffer[]): void {
  const r = ctx.ks.getHash(args[1]!);
  ctx.out.integer(r === undefined ? 0 : ctx.ks.hashDelete(args[1]!, r, args.slice(2)));
}

function hgetall(what: 'all' | 'keys' | 'values') {
  return (ctx: CommandContext, args: Buffer[]): void => {
    const r = ctx.ks.getHash(args[1]!);
    const items: Buffer[] = [];
    if (r !== undefined) {
      for (const [f, v] of ctx.ks.hashEntries(args[1]!)) {
        if (what !== 'values') items.push(f);
        if (what !== 'keys') items.push(v);
      }
    }
    if (what === 'all') {
      ctx.out.mapHeader(items.length / 2);
      for (const b of items) ctx.out.bulk(b);
    } else {
      ctx.out.bulkArray(items);
    }
  };
}

function hlen(ctx: CommandContext, args: Buffer[]): void {
  ctx.out.integer(ctx.ks.getHash(args[1]!)?.fields ?? 0);
}

function hexists(ctx: CommandContext, args: Buffer[]): void {
  const exists = ctx.ks.getHash(args[1]!) !== undefined && ctx.ks.hashGet(args[1]!, args[2]!) !== undefined;
  ctx.out.integer(exists ? 1 : 0);
}

function hstrlen(ctx: CommandContext, args: Buffer[]): void {
  const v = ctx.ks.getHash(args[1]!) === undefined ? undefined : ctx.ks.hashGet(args[1]!, args[2]!);
  ctx.out.integer(v?.length ?? 0);
}

/** The field an increment replaces: a write's lookup, not counted as a keyspace read. */
function fieldToUpdate(ctx: CommandContext, key: Buffer, field: Buffer): Buffer | undefined {
  return hashOf(ctx.ks.lookup(key)) === undefined ? undefined : ctx.ks.hashGet(key, field);
}

function hincrby(ctx: CommandContext, args: Buffer[]): void {
  const by = int64Arg(args[3]!);
  const raw = fieldToUpdate(ctx, args[1]!, args[2]!);
  let current: bigint;
  try {
    current = storedInt64(raw);
  } catch {
    replyError('ERR hash value is not an integer');
  }
  const next = checkedInt64(current + by);
  ctx.ks.hashSet(args[1]!, [[args[2]!, Buffer.from(next.toString(), 'latin1')]]);
  ctx.out.integer(next);
}

function hincrbyfloat(ctx: CommandContext, args: Buffer[]): void {
  const by = decimalArg(args[3]!, NOT_FLOAT);
  if (by.kind === 'inf') replyError('ERR value is NaN or Infinity');
  const raw = fieldToUpdate(ctx, args[1]!, args[2]!);
  const current = raw === undefined ? ZERO : decimalArg(raw, 'ERR hash value is not a float');
  const next = addDecimalFloats(current, by);
  if (next === undefined) replyError('ERR increment would produce NaN or Infinity');
  const text = formatDecimalFloat(next);
  ctx.ks.hashSet(args[1]!, [[args[2]!, Buffer.from(text, 'latin1')]]);
  ctx.out.bulk(text);
}

function hscan(ctx: CommandContext, args: Buffer[]): void {
  const key = args[1]!;
  const scope = 'h' + key.toString('latin1');
  const after = resumeAfter(ctx, scope, args[2]!);
  const o = scanOptions(args, 3, { noValues: true });
  const fields = ctx.ks.getHash(key) === undefined ? [] : ctx.ks.hashEntries(key, after);
  replyScanPage(ctx, scope, fields, o, (field, value, items) => {
    items.push(field);
    if (!o.noValues) items.push(value);
  });
}

const W = ['write', 'denyoom', 'fast'] as const;
const K1: [number, number, number] = [1, 1, 1];

export const HASH_COMMANDS: CommandSpec[] = [
  withFields(spec('hset', -4, [...W], K1, 'hash', 'Creates or modifies the value of a field in a hash.', hset), [2, -1, 2]),
  withFields(spec('hmset', -4, [...W], K1, 'hash', 'Sets the values of multiple fields.', hset), [2, -1, 2]),
  withFields(spec('hsetnx', 4, [...W], K1, 'hash', 'Sets the value of a field in a hash only when the field does not exist.', hsetnx), [2, 2, 1]),
  withFields(spec('hget', 3, ['readonly', 'fast'], K1, 'hash', 'Returns the value of a field in a hash.', hget), [2, 2, 1]),
  withFields(spec('hmget', -3, ['readonly', 'fast'], K1, 'hash', 'Returns the values of all fields in a hash.', hmget), [2, -1, 1]),
  withFields(spec('hdel', -3, ['write', 'fast'], K1, 'hash', 'Deletes one or more fields and their values from a hash. Deletes the hash if no fields remain.', hdel), [2, -1, 1]),
  { ...spec('hgetall', 2, ['readonly'], K1, 'hash', 'Returns all fields and values in a hash.', hgetall('all')), walksFields: true },
  { ...spec('hkeys', 2, ['readonly'], K1, 'hash', 'Returns all fields in a hash.', hgetall('keys')), walksFields: true },
  { ...spec('hvals', 2, ['readonly'], K1, 'hash', 'Returns all values in a hash.', hgetall('values')), walksFields: true },
  spec('hlen', 2, ['readonly', 'fast'], K1, 'hash', 'Returns the number of fields in a hash.', hlen),
  withFields(spec('hexists', 3, ['readonly', 'fast'], K1, 'hash', 'Determines whether a field exists in a hash.', hexists), [2, 2, 1]),
  withFields(spec('hstrlen', 3, ['readonly', 'fast'], K1, 'hash', 'Returns the length of the value of a field.', hstrlen), [2, 2, 1]),
  withFields(spec('hincrby', 4, [...W], K1, 'hash', 'Increments the integer value of a field in a hash by a number. Uses 0 as initial value if the field does not exist.', hincrby), [2, 2, 1]),
  withFields(spec('hincrbyfloat', 4, [...W], K1, 'hash', 'Increments the floating point value of a field by a number. Uses 0 as initial value if the field does not exist.', hincrbyfloat), [2, 2, 1]),
  spec('hscan', -3, ['readonly'], K1, 'hash', 'Iterates over fields and values of a hash.', hscan),
];
