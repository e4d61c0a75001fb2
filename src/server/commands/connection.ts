import { timingSafeEqual, createHash } from 'node:crypto';
import { redactBytes } from '../../log/logger.js';
import { intArg } from './args.js';
import { isWord, lowerName, replyError, spec, SYNTAX_ERROR, type CommandContext, type CommandSpec } from './command.js';

/** What HELLO reports. Clients gate features on the Redis version; tdekv speaks Redis 7.2's protocol. */
export const REDIS_COMPAT_VERSION = '7.2.0';

function ping(ctx: CommandContext, args: Buffer[]): void {
  if (args.length > 2) replyError("ERR wrong number of arguments for 'ping' command");
  if (args.length === 2) ctx.out.bulk(args[1]!);
  else ctx.out.simple('PONG');
}

function quit(ctx: CommandContext): void {
  ctx.out.simple('OK');
  ctx.client.closeAfterReply = true;
}

/** Constant-time password check (hashing first makes the lengths equal). */
export function passwordMatches(given: Buffer, expected: string | undefined): boolean {
  if (expected === undefined) return false;
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected, 'utf8').digest();
  return timingSafeEqual(a, b);
}

/**
 * A refused attempt is logged and counted so that password guessing shows up in the log and on
 * a dashboard. The password is never logged: a typo of the right one is nearly the right one.
 * The user name is an account name, not user data, so redact-info-log does not hide it; a
 * client chooses it, so it is escaped and cut short.
 */
function refuse(ctx: CommandContext, user: Buffer | undefined): never {
  ctx.server.stats.authFailures++;
  const shownUser = user === undefined ? 'default' : redactBytes(user, false);
  ctx.server.authFailureLog.run((suppressed) =>
    ctx.server.logger.warn({ client: ctx.client.id, addr: ctx.client.addr, user: shownUser, ...(suppressed > 0 ? { suppressed } : {}) }, 'AUTH failed: wrong user name or password'),
  );
  return replyError('WRONGPASS invalid username-password pair or user is disabled.');
}

/** The user `[security] admin-password` stands for; user names are case-sensitive, as in Redis. */
const ADMIN_USER = Buffer.from('admin');

/**
 * Two users, as a Redis ACL with `default` (requirepass, or nopass) and `admin`: AUTH admin
 * also authenticates, so an admin client needs only its own password. A failed AUTH changes
 * nothing; a successful one switches the connection to that user.
 */
function authenticate(ctx: CommandContext, user: Buffer | undefined, pass: Buffer): void {
  const { requirepass: expected, adminPassword } = ctx.server.config.security;
  if (user !== undefined && user.equals(ADMIN_USER) && adminPassword !== undefined) {
    if (!passwordMatches(pass, adminPassword)) refuse(ctx, user);
    ctx.client.authenticated = true;
    ctx.client.admin = true;
    return;
  }
  if (expected === undefined) {
    if (user === undefined) replyError('ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?');
    if (!isWord(user, 'default')) refuse(ctx, user);
  } else if ((user !== undefined && user.toString('utf8') !== 'default') || !passwordMatches(pass, expected)) refuse(ctx, user);
  ctx.client.authenticated = true;
  ctx.client.admin = false;
}

function auth(ctx: CommandContext, args: Buffer[]): void {
  if (args.length > 3) replyError(SYNTAX_ERROR);
  authenticate(ctx, args.length === 3 ? args[1] : undefined, args[args.length - 1]!);
  ctx.out.simple('OK');
}

function hello(ctx: CommandContext, args: Buffer[]): void {
  let proto: number = ctx.out.proto;
  let i = 1;
  if (args.length > 1) {
    const v = Number.parseInt(args[1]!.toString('latin1'), 10);
    if (!/^-?[0-9]+$/.test(args[1]!.toString('latin1'))) replyError('ERR Protocol version is not an integer or out of range');
    if (v !== 2 && v !== 3) replyError('NOPROTO unsupported protocol version');
    proto = v;
    i = 2;
  }
  let name: Buffer | undefined;
  for (; i < args.length; i++) {
    const more = args.length - i - 1;
    if (isWord(args[i]!, 'auth') && more >= 2) {
      authenticate(ctx, args[i + 1], args[i + 2]!);
      i += 2;
    } else if (isWord(args[i]!, 'setname') && more >= 1) {
      name = checkedName(args[i + 1]!);
      i++;
    } else {
      replyError(`ERR Syntax error in HELLO option '${args[i]!.toString('latin1')}'`);
    }
  }
  if (!ctx.client.authenticated) replyError('NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time');
  if (name !== undefined) ctx.client.name = name;
  ctx.out.proto = proto as 2 | 3;
  ctx.out.mapHeader(7);
  ctx.out.bulk('server');
  ctx.out.bulk('redis');
  ctx.out.bulk('version');
  ctx.out.bulk(REDIS_COMPAT_VERSION);
  ctx.out.bulk('proto');
  ctx.out.integer(proto);
  ctx.out.bulk('id');
  ctx.out.integer(ctx.client.id);
  ctx.out.bulk('mode');
  ctx.out.bulk('standalone');
  ctx.out.bulk('role');
  ctx.out.bulk('master');
  ctx.out.bulk('modules');
  ctx.out.arrayHeader(0);
}

function select(ctx: CommandContext, args: Buffer[]): void {
  const n = intArg(args[1]!);
  if (n !== 0) replyError('ERR DB index is out of range');
  ctx.out.simple('OK');
}

function checkedName(name: Buffer): Buffer {
  for (const c of name) if (c < 0x21 || c > 0x7e) replyError('ERR Client names cannot contain spaces, newlines or special characters.');
  // A copy: arguments are views of the socket's read buffer, which the name would pin.
  return Buffer.from(name);
}

/** One line of CLIENT LIST / CLIENT INFO. */
function clientLine(ctx: CommandContext, c: CommandContext['client']): string {
  const age = Math.floor((Date.now() - c.connectedAt) / 1000);
  const b = c.buffers();
  return `id=${c.id} addr=${c.addr} name=${c.name?.toString('latin1') ?? ''} age=${age} db=0 multi=${c.multi === undefined ? -1 : c.multi.length} qbuf=${b.queryBuffer} argv-mem=${b.argv} multi-mem=${c.multiBytes} omem=${b.output} tot-mem=${b.total} resp=${c === ctx.client ? ctx.out.proto : 2} lib-name=${c.libName ?? ''} lib-ver=${c.libVersion ?? ''} cmd=${c.lastCommand}`;
}

const CLIENT_SUBCOMMANDS: Record<string, (ctx: CommandContext, args: Buffer[]) => void> = {
  setname: (ctx, a) => {
    if (a.length !== 3) wrongArgs('client|setname');
    const name = checkedName(a[2]!);
    ctx.client.name = name.length === 0 ? undefined : name;
    ctx.out.simple('OK');
  },
  getname: (ctx) => (ctx.client.name === undefined ? ctx.out.nullBulk() : ctx.out.bulk(ctx.client.name)),
  id: (ctx) => ctx.out.integer(ctx.client.id),
  setinfo: (ctx, a) => {
    if (a.length !== 4) wrongArgs('client|setinfo');
    const attr = a[2]!;
    const value = a[3]!.toString('utf8');
    if (/[\s\n]/.test(value)) replyError(`ERR ${attr.toString('latin1')} cannot contain spaces, newlines or special characters.`);
    if (isWord(attr, 'lib-name')) ctx.client.libName = value;
    else if (isWord(attr, 'lib-ver')) ctx.client.libVersion = value;
    else replyError(`ERR Unrecognized option '${attr.toString('latin1')}'`);
    ctx.out.simple('OK');
  },
  info: (ctx) => ctx.out.verbatim(clientLine(ctx, ctx.client) + '\n'),
  list: (ctx) => ctx.out.verbatim([...ctx.server.clients()].map((c) => clientLine(ctx, c) + '\n').join('')),
};

function wrongArgs(name: string): never {
  replyError(`ERR wrong number of arguments for '${name}' command`);
}

function client(ctx: CommandContext, args: Buffer[]): void {
  const sub = lowerName(args[1]!);
  const run = CLIENT_SUBCOMMANDS[sub];
  if (run === undefined) replyError(`ERR unknown subcommand '${args[1]!.toString('latin1')}'. Try CLIENT HELP.`);
  run(ctx, args);
}

export const CONNECTION_COMMANDS: CommandSpec[] = [
  spec('ping', -1, ['fast'], [0, 0, 0], 'connection', 'Returns the server\'s liveliness response.', ping),
  spec('echo', 2, ['fast'], [0, 0, 0], 'connection', 'Returns the given string.', (ctx, a) => ctx.out.bulk(a[1]!)),
  spec('quit', -1, ['no_auth', 'fast'], [0, 0, 0], 'connection', 'Closes the connection.', quit),
  spec('auth', -2, ['no_auth', 'fast'], [0, 0, 0], 'connection', 'Authenticates the connection.', auth),
  spec('hello', -1, ['no_auth', 'fast'], [0, 0, 0], 'connection', 'Handshakes with the Redis server.', hello),
  spec('select', 2, ['fast'], [0, 0, 0], 'connection', 'Changes the selected database (tdekv has only database 0).', select),
  spec('client', -2, [], [0, 0, 0], 'connection', 'A container for client connection commands.', client),
];
