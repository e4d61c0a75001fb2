import { globMatcher } from '../glob.js';
import { aclCategories } from './acl-categories.js';
import { isWord, lowerName, replyError, spec, SYNTAX_ERROR, type CommandContext, type CommandSpec } from './command.js';

/** COMMAND INFO's 10-element entry, as Redis 7 replies. */
function commandInfo(ctx: CommandContext, s: CommandSpec): void {
  const out = ctx.out;
  out.arrayHeader(10);
  out.bulk(s.name);
  out.integer(s.arity);
  out.setHeader(s.flags.length);
  for (const f of s.flags) out.simple(f);
  out.integer(s.firstKey);
  out.integer(s.lastKey);
  out.integer(s.step);
  const cats = aclCategories(s);
  out.setHeader(cats.length);
  for (const c of cats) out.simple(`@${c}`);
  out.setHeader(0); // tips
  out.arrayHeader(0); // key specs
  out.arrayHeader(0); // subcommands
}

function commandDocs(ctx: CommandContext, s: CommandSpec): void {
  ctx.out.bulk(s.name);
  ctx.out.mapHeader(3);
  ctx.out.bulk('summary');
  ctx.out.bulk(s.summary);
  ctx.out.bulk('since');
  ctx.out.bulk('1.0.0');
  ctx.out.bulk('group');
  ctx.out.bulk(s.group);
}

/**
 * COMMAND LIST [FILTERBY MODULE name | ACLCAT category | PATTERN pattern], checked as Redis does: anything else
 * is a syntax error. tdekv has no modules, so MODULE matches nothing; PATTERN ignores case as Redis's does.
 */
function commandList(table: ReadonlyMap<string, CommandSpec>, args: Buffer[]): string[] {
  if (args.length === 2) return [...table.keys()];
  if (args.length !== 5 || !isWord(args[2]!, 'filterby')) replyError(SYNTAX_ERROR);
  const value = args[4]!;
  if (isWord(args[3]!, 'module')) return [];
  if (isWord(args[3]!, 'aclcat')) {
    const cat = lowerName(value);
    return [...table.values()].filter((s) => aclCategories(s).includes(cat)).map((s) => s.name);
  }
  if (isWord(args[3]!, 'pattern')) {
    // Command names are lower case, so a lower-cased pattern matches them regardless of case.
    const match = globMatcher(Buffer.from(value.toString('latin1').toLowerCase(), 'latin1'));
    return [...table.keys()].filter((name) => match(Buffer.from(name, 'latin1')));
  }
  replyError(SYNTAX_ERROR);
}

function command(ctx: CommandContext, args: Buffer[]): void {
  const table = ctx.server.commands;
  if (args.length === 1) {
    ctx.out.arrayHeader(table.size);
    for (const s of table.values()) commandInfo(ctx, s);
    return;
  }
  const sub = lowerName(args[1]!);
  const named = (): CommandSpec[] => (args.length > 2 ? args.slice(2).map((a) => table.get(lowerName(a))).filter((s): s is CommandSpec => s !== undefined) : [...table.values()]);
  switch (sub) {
    case 'count':
      return ctx.out.integer(table.size);
    case 'info': {
      const names = args.length > 2 ? args.slice(2).map((a) => table.get(lowerName(a))) : [...table.values()];
      ctx.out.arrayHeader(names.length);
      for (const s of names) {
        if (s === undefined) ctx.out.nullArray();
        else commandInfo(ctx, s);
      }
      return;
    }
    case 'docs': {
      const specs = named();
      ctx.out.mapHeader(specs.length);
      for (const s of specs) commandDocs(ctx, s);
      return;
    }
    case 'list':
      return ctx.out.bulkArray(commandList(table, args));
    case 'getkeys': {
      const s = table.get(lowerName(args[2] ?? Buffer.alloc(0)));
      if (s === undefined) replyError('ERR Invalid command specified');
      const cmd = args.slice(2);
      const last = s.lastKey < 0 ? cmd.length + s.lastKey : s.lastKey;
      const keys: Buffer[] = [];
      if (s.firstKey > 0) for (let i = s.firstKey; i <= last && i < cmd.length; i += s.step) keys.push(cmd[i]!);
      if (keys.length === 0) replyError('ERR The command has no key arguments');
      return ctx.out.bulkArray(keys);
    }
    default:
      replyError(`ERR unknown subcommand '${args[1]!.toString('latin1')}'. Try COMMAND HELP.`);
  }
}

function info(ctx: CommandContext, args: Buffer[]): void {
  ctx.out.verbatim(ctx.server.info(args.slice(1).map((a) => a.toString('latin1').toLowerCase())));
}

/** The settings CONFIG GET shows; they reflect the TOML config (CONFIG SET is not supported). */
function configValues(ctx: CommandContext): Array<[string, string]> {
  const c = ctx.server.config;
  const sync = c.storage.syncWrites;
  return [
    ['port', String(c.server.addr.port)],
    ['bind', c.server.addr.host],
    ['maxclients', String(c.server.maxClients)],
    ['proto-max-bulk-len', String(c.server.maxRequestSize)],
    ['client-query-buffer-limit', String(c.server.clientQueryBufferLimit)],
    ['maxmemory-clients', 'percent' in c.server.maxmemoryClients ? `${c.server.maxmemoryClients.percent}%` : String(c.server.maxmemoryClients.bytes)],
    ['client-output-buffer-limit', `normal ${c.server.clientOutputBufferLimit.hard} ${c.server.clientOutputBufferLimit.soft} ${c.server.clientOutputBufferLimit.softSeconds}`],
    ['databases', '1'],
    ['save', ''],
    ['appendonly', 'yes'],
    ['appendfsync', sync],
    ['dir', c.storage.dataDir],
    ['requirepass', ''],
    ['timeout', '0'],
    ['tls-port', c.security.tls !== undefined ? String(c.server.addr.port) : '0'],
    ['maxmemory', '0'],
    ['maxmemory-policy', 'noeviction'],
    ['cluster-enabled', 'no'],
  ];
}

function config(ctx: CommandContext, args: Buffer[]): void {
  const sub = lowerName(args[1]!);
  if (sub === 'get') {
    if (args.length < 3) replyError("ERR wrong number of arguments for 'config|get' command");
    const matchers = args.slice(2).map((a) => globMatcher(Buffer.from(a.toString('latin1').toLowerCase(), 'latin1')));
    const found = configValues(ctx).filter(([name]) => matchers.some((m) => m(Buffer.from(name, 'latin1'))));
    ctx.out.mapHeader(found.length);
    for (const [k, v] of found) {
      ctx.out.bulk(k);
      ctx.out.bulk(v);
    }
    return;
  }
  if (sub === 'set') replyError('ERR CONFIG SET is not supported by tdekv: change the TOML config file and restart the server');
  if (sub === 'resetstat') {
    for (const s of ctx.server.stats.commands.values()) {
      s.calls = 0;
      s.failed = 0;
      s.usec = 0;
    }
    ctx.server.stats.keyspaceHits = 0;
    ctx.server.stats.keyspaceMisses = 0;
    return ctx.out.simple('OK');
  }
  if (sub === 'rewrite') replyError('ERR CONFIG REWRITE is not supported by tdekv: the TOML config file is the source of truth');
  replyError(`ERR unknown subcommand '${args[1]!.toString('latin1')}'. Try CONFIG HELP.`);
}

function flush(ctx: CommandContext, args: Buffer[]): void {
  if (args.length > 2 || (args.length === 2 && !isWord(args[1]!, 'sync') && !isWord(args[1]!, 'async'))) replyError(SYNTAX_ERROR);
  ctx.server.touchAllExisting();
  ctx.ks.clear();
  ctx.out.simple('OK');
}

function time(ctx: CommandContext): void {
  const ms = Date.now();
  ctx.out.bulkArray([String(Math.floor(ms / 1000)), String((ms % 1000) * 1000)]);
}

const NONE: [number, number, number] = [0, 0, 0];

export const ADMIN_COMMANDS: CommandSpec[] = [
  spec('command', -1, ['loading', 'stale'], NONE, 'server', 'Returns detailed information about all commands.', command),
  spec('info', -1, ['loading', 'stale'], NONE, 'server', 'Returns information and statistics about the server.', info),
  { ...spec('config', -2, ['admin', 'loading', 'stale'], NONE, 'server', 'A container for server configuration commands.', config), subcommandNames: ['get', 'set', 'resetstat', 'rewrite'] },
  spec('dbsize', 1, ['readonly', 'fast'], NONE, 'server', 'Returns the number of keys in the database.', (ctx) => ctx.out.integer(ctx.ks.keyCount)),
  spec('flushdb', -1, ['write'], NONE, 'server', 'Removes all keys from the current database.', flush),
  spec('flushall', -1, ['write'], NONE, 'server', 'Removes all keys from all databases.', flush),
  spec('time', 1, ['loading', 'stale', 'fast'], NONE, 'server', 'Returns the server time.', time),
];
