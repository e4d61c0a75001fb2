import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { parse, TomlDate, TomlError, type TomlTable, type TomlValue } from 'smol-toml';
import { TdekvError, errnoCode } from '../errors.js';
import { fail, show } from './config-error.js';
import { closest } from './near-miss.js';
import { applyRules, type SettingNames } from './rules.js';
import { SCHEMA, childrenOf, engineTomlKey, isNode, own, type Field, type Section } from './schema.js';
import type { TdekvConfig } from './types.js';
import { KIND_NAMES, type Context, type Kind } from './validators.js';

/*
 * The TOML configuration file. The reader is generic over the SCHEMA table (schema.ts), so
 * every setting gets the same errors: source file, full dotted key, value, what is allowed.
 */

export interface ParseConfigOptions {
  /** Names the configuration in error messages, usually the file's path. */
  source: string;
  /**
   * Relative paths in the config (`data-dir`, master-key `path`) resolve against this, the
   * config file's directory, not the process's cwd: a config file then means the same
   * thing however and from wherever the server is started.
   */
  baseDir: string;
}

const MASTER_KEY_EXAMPLE =
  '\n\n  [security.encryption.master-key]\n  type = "file"\n  path = "/run/tdekv/master.key"   # 64 hex characters and a newline\n\n' +
  'or type = "kms" with key-id and region.';

/** The file's names for the cross-setting rules' errors (rules.ts). */
const FILE_NAMES: SettingNames = {
  encryption: (key) => `security.encryption.${key}`,
  masterKeySetting: (role, key) => `security.encryption.${role}.${key}`,
  masterKey: (role) => `[security.encryption.${role}]`,
  masterKeyShort: (role) => role,
  noMasterKey: '[security.encryption.master-key]',
  addMasterKey: 'it',
  masterKeyExample: `:${MASTER_KEY_EXAMPLE}`,
  engine: (setting) => `engine.${engineTomlKey(setting)}`,
};

export function parseConfig(text: string, options: ParseConfigOptions): TdekvConfig {
  const where = options.source;
  const ctx: Context = { baseDir: options.baseDir };
  const root = parseToml(text, where);
  checkContainer(root, '', where);
  const out: Record<string, unknown> = {};
  for (const [name, section] of Object.entries(SCHEMA)) {
    const table = tableAt(root, name, where);
    if (table === undefined && section.optional === true) continue;
    setAt(out, section.into, readSection(name, section, table ?? {}, ctx, where));
  }
  // SCHEMA's `into`/`prop` names mirror TdekvConfig; the full-config test holds them together.
  const config = out as unknown as TdekvConfig;
  applyRules({ encryption: config.security.encryption, engine: config.engine, file: config }, where, FILE_NAMES);
  return config;
}

export async function loadConfig(path: string): Promise<TdekvConfig> {
  const file = resolve(path);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = errnoCode(err) ?? 'unknown error';
    const why = own(READ_ERRORS, code) ?? code;
    const message = `${file}: cannot read the configuration file (${why}). Check the path and its permissions.`;
    throw new TdekvError('CONFIG_INVALID', message, { cause: err });
  }
  return parseConfig(text, { source: file, baseDir: dirname(file) });
}

const READ_ERRORS: Readonly<Record<string, string>> = {
  ENOENT: 'no such file',
  EACCES: 'permission denied',
  EISDIR: 'it is a directory',
};

function parseToml(text: string, where: string): TomlTable {
  try {
    return parse(text.replace(/^\uFEFF/, ''), { integersAsBigInt: true, unsafeKeyBehaviour: 'throw' });
  } catch (err) {
    if (!(err instanceof TomlError)) throw err;
    // smol-toml's message carries an excerpt of the surrounding lines, which may hold a secret;
    // keep only its first line and do not attach the original as `cause`.
    const reason = (err.message.split('\n')[0] ?? '').replace(/^Invalid TOML document:\s*/, '');
    return fail(`${where}:${err.line}:${err.column}: invalid TOML at line ${err.line}, column ${err.column}: ${reason}`);
  }
}

function readSection(name: string, section: Section, table: TomlTable, ctx: Context, where: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  let fields = section.fields;
  let scope = `in [${name}]`;
  const tagKey = section.variantBy;
  if (tagKey !== undefined && section.variants !== undefined) {
    const tagField = own(fields, tagKey);
    const raw = own(table, tagKey);
    if (tagField === undefined) throw new Error(`schema: [${name}] variantBy names no field`);
    if (raw === undefined) {
      const tags = Object.keys(section.variants).map((v) => `"${v}"`);
      return fail(`${where}: ${name}.${tagKey} is required in [${name}]. Allowed: ${tags.join(' | ')}.`);
    }
    const tag = convertValue(`${name}.${tagKey}`, tagField, raw, ctx, where) as string;
    fields = { ...fields, ...own(section.variants, tag) };
    scope += ` with ${tagKey} = "${tag}"`;
  }

  for (const [key, value] of Object.entries(table)) {
    if (own(fields, key) !== undefined) continue;
    const full = `${name}.${key}`;
    if (isNode(full)) {
      const sub = asTable(value, full, where);
      if (own(SCHEMA, full) === undefined) checkContainer(sub, full, where);
      continue;
    }
    const owner = Object.entries(section.variants ?? {}).find(([, f]) => own(f, key) !== undefined);
    const note = owner === undefined ? '' : ` (${key} belongs to ${tagKey ?? 'type'} = "${owner[0]}")`;
    unknownKey(full, value, [...Object.keys(fields), ...childrenOf(name).map((c) => `[${c}]`)], scope, where, note);
  }

  for (const [key, field] of Object.entries(fields)) {
    const full = `${name}.${key}`;
    const raw = own(table, key);
    if (raw !== undefined) out[field.prop] = convertValue(full, field, raw, ctx, where);
    else if (field.required === true) fail(`${where}: ${full} is required ${scope}. Allowed: ${field.allowed}.`);
    else if (field.default !== undefined) out[field.prop] = field.default(ctx);
  }
  return out;
}

/** Tables that only hold sections (the top level): every key must be a known section. */
function checkContainer(table: TomlTable, name: string, where: string): void {
  for (const [key, value] of Object.entries(table)) {
    const full = name === '' ? key : `${name}.${key}`;
    if (!isNode(full)) {
      const scope = name === '' ? 'at the top level' : `in [${name}]`;
      unknownKey(full, value, childrenOf(name).map((c) => `[${c}]`), scope, where, '');
    }
    const sub = asTable(value, full, where);
    if (own(SCHEMA, full) === undefined) checkContainer(sub, full, where);
  }
}

function convertValue(full: string, field: Field, raw: TomlValue, ctx: Context, where: string): unknown {
  const viaInteger = field.fromInteger !== undefined && typeof raw === 'bigint';
  if (kindOf(raw) !== field.kind && !viaInteger) {
    const expected = KIND_NAMES[field.kind] + (field.fromInteger !== undefined ? ' or an integer' : '');
    fail(`${where}: ${full} must be ${expected}, but is ${describe(raw, field.secret)}. Allowed: ${field.allowed}.`);
  }
  try {
    if (viaInteger) return field.fromInteger!(raw);
    return field.convert(raw as never, ctx);
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    const shown = field.secret === true ? `${full} (value not shown)` : `${full} = ${show(raw)}`;
    return fail(`${where}: ${shown} is invalid: ${reason}. Allowed: ${field.allowed}.`);
  }
}

function unknownKey(full: string, value: TomlValue, allowed: string[], scope: string, where: string, note: string): never {
  const what = isTable(value) ? `unknown section [${full}]` : `unknown key ${full}`;
  const key = full.slice(full.lastIndexOf('.') + 1);
  const guess = closest(key, allowed.map((a) => a.replace(/^\[(?:.*\.)?(.*)\]$/, '$1')));
  const hint = guess === undefined || note !== '' ? '' : ` Did you mean ${guess}?`;
  // The value is not echoed: an unknown key may well be someone's attempt at a secret.
  return fail(`${where}: ${what}${note}.${hint} Allowed ${scope}: ${allowed.join(', ') || '(nothing else)'}.`);
}

function tableAt(root: TomlTable, name: string, where: string): TomlTable | undefined {
  let table: TomlTable = root;
  let path = '';
  for (const part of name.split('.')) {
    path = path === '' ? part : `${path}.${part}`;
    const next = own(table, part);
    if (next === undefined) return undefined;
    table = asTable(next, path, where);
  }
  return table;
}

function asTable(value: TomlValue, full: string, where: string): TomlTable {
  if (isTable(value)) return value;
  // Not echoed: a value where a section belongs could be a key pasted in the wrong place.
  return fail(`${where}: ${full} must be a section ([${full}]), but is ${describe(value, true)}.`);
}

function setAt(target: Record<string, unknown>, path: readonly string[], value: unknown): void {
  let node = target;
  for (const part of path.slice(0, -1)) {
    const child = (node[part] ??= {}) as Record<string, unknown>;
    node = child;
  }
  node[path[path.length - 1]!] = value;
}

function isTable(value: TomlValue): value is TomlTable {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof TomlDate);
}

function kindOf(value: TomlValue): Kind | undefined {
  switch (typeof value) {
    case 'string':
      return 'string';
    case 'boolean':
      return 'boolean';
    case 'bigint':
      return 'integer';
    default:
      return undefined;
  }
}

function describe(value: TomlValue, secret: boolean | undefined): string {
  const hide = secret === true;
  if (typeof value === 'string') return hide ? 'a string' : `the string ${show(value)}`;
  if (typeof value === 'bigint') return hide ? 'an integer' : `the integer ${value}`;
  if (typeof value === 'number') return hide ? 'a float' : `the float ${Number.isInteger(value) ? value.toFixed(1) : value}`;
  if (typeof value === 'boolean') return hide ? 'a boolean' : `the boolean ${value}`;
  if (Array.isArray(value)) return 'an array';
  if (value instanceof TomlDate) return 'a date/time';
  return 'a table';
}
