import { globMatcher, globPrefix } from '../glob.js';
import type { KeyRecord } from '../keyspace/record.js';
import { isWord, replyError, spec, type CommandContext, type CommandSpec } from './command.js';
import { expireAtFrom, type ExpiryUnit } from './expiry-args.js';
import { replyScanPage, resumeAfter, scanOptions } from './scan-args.js';

function del(ctx: CommandContext, args: Buffer[]): void {
  let n = 0;
  for (let i = 1; i < args.length; i++) if (ctx.ks.delete(args[i]!)) n++;
  ctx.out.integer(n);
}

function exists(ctx: CommandContext, args: Buffer[]): void {
  let n = 0;
  for (let i = 1; i < args.length; i++) if (ctx.ks.read(args[i]!) !== undefined) n++;
  ctx.out.integer(n);
}

function type(ctx: CommandContext, args: Buffer[]): void {
  ctx.out.simple(ctx.ks.read(args[1]!)?.type ?? 'none');
}

function keys(ctx: CommandContext, args: Buffer[]): void {
  const match = globMatcher(args[1]!);
  const found: Buffer[] = [];
  for (const [key] of ctx.ks.keys({ prefix: globPrefix(args[1]!) })) if (match(key)) found.push(Buffer.from(key));
  ctx.out.bulkArray(found);
}

function scan(ctx: CommandContext, args: Buffer[]): void {
  const after = resumeAfter(ctx, 'scan', args[1]!);
  const o = scanOptions(args, 2, { type: true });
  const keys = ctx.ks.keys({ ...(after !== undefined ? { after } : {}), ...(o.prefix !== undefined ? { prefix: o.prefix } : {}) });
  replyScanPage(ctx, 'scan', keys, o, (key, r, items) => {
    if (o.type === undefined || r.type === o.type) items.push(Buffer.from(key));
  });
}

function rename(nx: boolean) {
  return (ctx: CommandContext, args: Buffer[]): void => {
    const from = args[1]!;
    const to = args[2]!;
    const r = ctx.ks.lookup(from);
    if (r === undefined) replyError('ERR no such key');
    if (nx) {
      if (ctx.ks.lookup(to) !== undefined && !from.equals(to)) return ctx.out.integer(0);
      if (from.equals(to)) return ctx.out.integer(0);
    }
    ctx.ks.rename(from, r, to);
    if (nx) ctx.out.integer(1);
    else ctx.out.simple('OK');
  };
}

function expire(unit: ExpiryUnit, name: string) {
  return (ctx: CommandContext, args: Buffer[]): void => {
    const key = args[1]!;
    const at = expireAtFrom(unit, args[2]!, ctx.ks.now(), name, true);
    let nx = false;
    let xx = false;
    let gt = false;
    let lt = false;
    for (let i = 3; i < args.length; i++) {
      const a = args[i]!;
      if (isWord(a, 'nx')) nx = true;
      else if (isWord(a, 'xx')) xx = true;
      else if (isWord(a, 'gt')) gt = true;
      else if (isWord(a, 'lt')) lt = true;
      else replyError(`ERR Unsupported option ${a.toString('latin1')}`);
    }
    if (nx && (xx || gt || lt)) replyError('ERR NX and XX, GT or LT options at the same time are not compatible');
    if (gt && lt) replyError('ERR GT and LT options at the same time are not compatible');
    const r = ctx.ks.lookup(key);
    if (r === undefined) return ctx.out.integer(0);
    const current = r.expireAt;
    // A key without expiry counts as expiring never (infinitely late) for GT and LT.
    if ((nx && current !== 0) || (xx && current === 0) || (gt && (current === 0 || at <= current)) || (lt && current !== 0 && at >= current)) return ctx.out.integer(0);
    ctx.ks.setExpiry(key, r, at <= ctx.ks.now() ? -1 : at);
    ctx.out.integer(1);
  };
}

function ttl(ms: boolean) {
  return (ctx: CommandContext, args: Buffer[]): void => {
    const r: KeyRecord | undefined = ctx.ks.read(args[1]!);
    if (r === undefined) return ctx.out.integer(-2);
    if (r.expireAt === 0) return ctx.out.integer(-1);
    const left = Math.max(0, r.expireAt - ctx.ks.now());
    ctx.out.integer(ms ? left : Math.floor((left + 500) / 1000));
  };
}

function persist(ctx: CommandContext, args: Buffer[]): void {
  const r = ctx.ks.lookup(args[1]!);
  if (r === undefined || r.expireAt === 0) return ctx.out.integer(0);
  ctx.ks.setExpiry(args[1]!, r, 0);
  ctx.out.integer(1);
}

function expiretime(ms: boolean) {
  return (ctx: CommandContext, args: Buffer[]): void => {
    const r = ctx.ks.lookup(args[1]!);
    if (r === undefined) return ctx.out.integer(-2);
    if (r.expireAt === 0) return ctx.out.integer(-1);
    ctx.out.integer(ms ? r.expireAt : Math.floor(r.expireAt / 1000));
  };
}

function touch(ctx: CommandContext, args: Buffer[]): void {
  let n = 0;
  for (let i = 1; i < args.length; i++) if (ctx.ks.lookup(args[i]!) !== undefined) n++;
  ctx.out.integer(n);
}

const K1: [number, number, number] = [1, 1, 1];

export const KEY_COMMANDS: CommandSpec[] = [
  spec('del', -2, ['write'], [1, -1, 1], 'generic', 'Deletes one or more keys.', del),
  spec('unlink', -2, ['write', 'fast'], [1, -1, 1], 'generic', 'Asynchronously deletes one or more keys.', del),
  spec('exists', -2, ['readonly', 'fast'], [1, -1, 1], 'generic', 'Determines whether one or more keys exist.', exists),
  spec('touch', -2, ['readonly', 'fast'], [1, -1, 1], 'generic', 'Returns the number of existing keys out of those specified.', touch),
  spec('type', 2, ['readonly', 'fast'], K1, 'generic', 'Determines the type of value stored at a key.', type),
  spec('keys', 2, ['readonly'], [0, 0, 0], 'generic', 'Returns all key names that match a pattern.', keys),
  spec('scan', -2, ['readonly'], [0, 0, 0], 'generic', 'Iterates over the key names in the database.', scan),
  spec('rename', 3, ['write'], [1, 2, 1], 'generic', 'Renames a key and overwrites the destination.', rename(false)),
  spec('renamenx', 3, ['write', 'fast'], [1, 2, 1], 'generic', 'Renames a key only when the target key name does not exist.', rename(true)),
  spec('expire', -3, ['write', 'fast'], K1, 'generic', "Sets the expiration time of a key in seconds.", expire('ex', 'expire')),
  spec('pexpire', -3, ['write', 'fast'], K1, 'generic', 'Sets the expiration time of a key in milliseconds.', expire('px', 'pexpire')),
  spec('expireat', -3, ['write', 'fast'], K1, 'generic', 'Sets the expiration time of a key to a Unix timestamp.', expire('exat', 'expireat')),
  spec('pexpireat', -3, ['write', 'fast'], K1, 'generic', 'Sets the expiration time of a key to a Unix milliseconds timestamp.', expire('pxat', 'pexpireat')),
  spec('ttl', 2, ['readonly', 'fast'], K1, 'generic', 'Returns the expiration time in seconds of a key.', ttl(false)),
  spec('pttl', 2, ['readonly', 'fast'], K1, 'generic', 'Returns the expiration time in milliseconds of a key.', ttl(true)),
  spec('expiretime', 2, ['readonly', 'fast'], K1, 'generic', 'Returns the expiration time of a key as a Unix timestamp.', expiretime(false)),
  spec('pexpiretime', 2, ['readonly', 'fast'], K1, 'generic', 'Returns the expiration time of a key as a Unix milliseconds timestamp.', expiretime(true)),
  spec('persist', 2, ['write', 'fast'], K1, 'generic', 'Removes the expiration time of a key.', persist),
];

