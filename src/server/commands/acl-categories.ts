import type { CommandSpec } from './command.js';

/** Redis's category order (its ACL_CATEGORY bits), in which COMMAND INFO lists them. */
const ORDER = ['keyspace', 'read', 'write', 'set', 'sortedset', 'list', 'hash', 'string', 'bitmap', 'hyperloglog', 'geo', 'stream', 'pubsub', 'admin', 'fast', 'slow', 'blocking', 'dangerous', 'connection', 'transaction', 'scripting'];

const GROUP_CATEGORY: Partial<Record<CommandSpec['group'], string>> = {
  string: 'string',
  hash: 'hash',
  generic: 'keyspace',
  transactions: 'transaction',
  connection: 'connection',
};

/**
 * Where Redis's command table says otherwise than the derivation: containers (CLIENT, CONFIG) carry their
 * categories on their subcommands, and a few server commands are keyspace or dangerous ones.
 */
const EXPLICIT: Record<string, string[]> = {
  command: ['slow', 'connection'],
  info: ['slow', 'dangerous'],
  config: ['slow'],
  client: ['slow'],
  dbsize: ['keyspace', 'read', 'fast'],
  flushdb: ['keyspace', 'write', 'slow', 'dangerous'],
  flushall: ['keyspace', 'write', 'slow', 'dangerous'],
  keys: ['keyspace', 'read', 'slow', 'dangerous'],
};

/**
 * A command's ACL categories (without '@') in Redis's order, derived as Redis derives its implicit ones: from
 * its flags (write, read, admin → admin and dangerous, fast or else slow) and its group for the data-type and
 * keyspace categories. tdekv has no ACLs; COMMAND INFO and COMMAND LIST FILTERBY ACLCAT show them.
 */
export function aclCategories(s: CommandSpec): string[] {
  const explicit = EXPLICIT[s.name];
  const cats = new Set<string>(explicit ?? []);
  if (explicit === undefined) {
    const group = GROUP_CATEGORY[s.group];
    if (group !== undefined) cats.add(group);
    if (s.flags.includes('write')) cats.add('write');
    if (s.flags.includes('readonly')) cats.add('read');
    if (s.flags.includes('admin')) cats.add('admin').add('dangerous');
    cats.add(s.flags.includes('fast') ? 'fast' : 'slow');
  }
  return ORDER.filter((c) => cats.has(c));
}
