import type { EngineSettings, WalRecoveryMode } from '../engine/options.js';
import { fail, show } from './config-error.js';
import { closest } from './near-miss.js';
import { applyRules, type SettingNames } from './rules.js';
import { ENGINE_FIELDS, SCHEMA, engineTomlKey, optionName, own, type Field, type Fields, type Section } from './schema.js';
import type { EncryptionConfig } from './types.js';
import { KIND_NAMES, type Context } from './validators.js';

/*
 * The embedded API's options (`new TdekvLevel(dir, options)`): the file's [security.encryption],
 * [engine] and some [storage] settings as flat camelCase options, read through the same schema,
 * validators and cross-setting rules as the TOML file.
 */

/** What `configFromOptions` returns: the env's settings and the tuning options that were given. */
export interface OptionsConfig {
  encryption: EncryptionConfig;
  /** Only the options given; the engine fills in the rest from DEFAULT_ENGINE_TUNING. */
  engine: EngineSettings;
  /** `walRecoveryMode` ([storage] wal-recovery-mode). */
  walRecoveryMode: WalRecoveryMode;
}

/** [storage] settings that the embedded API takes too (the rest are the server's). */
const EMBEDDED_STORAGE_FIELDS = ['wal-recovery-mode'] as const;

const ENCRYPTION_SECTION = 'security.encryption';
const MASTER_KEY_OPTIONS: Readonly<Record<string, string>> = {
  masterKey: 'security.encryption.master-key',
  previousMasterKey: 'security.encryption.previous-master-key',
  serviceMasterKey: 'security.encryption.service-master-key',
};

const MASTER_KEY_OPTION_EXAMPLE =
  "masterKey: { type: 'file', path: '/run/tdekv/master.key' } (64 hex characters and a newline), " +
  "or { type: 'kms', keyId, region }";

/** The options' names for the cross-setting rules' errors (rules.ts). */
const OPTION_NAMES: SettingNames = {
  encryption: optionName,
  masterKeySetting: (role, key) => `${optionName(role)}.${optionName(key)}`,
  masterKey: optionName,
  masterKeyShort: optionName,
  serviceMasterKey: 'serviceMasterKey',
  noMasterKey: 'masterKey option',
  addMasterKey: 'masterKey',
  masterKeyExample: ` ${MASTER_KEY_OPTION_EXAMPLE}.`,
  engine: (setting) => optionName(engineTomlKey(setting)),
};

/** How configFromOptions treats option names that are not its own. */
export interface OptionNamesPolicy {
  /** Names the caller handles itself (e.g. abstract-level's `keyEncoding`): ignored. */
  passthrough?: readonly string[];
  /**
   * 'reject' (default): any other name is an error. 'near-misses': only a name within a
   * typo of one of ours is (for callers that forward unknown options elsewhere by design,
   * as abstract-level forwards them to open hooks).
   */
  unknown?: 'reject' | 'near-misses';
}

/** Every option name configFromOptions reads. */
export function configOptionNames(): string[] {
  const names = (fields: Fields) => Object.keys(fields).map(optionName);
  return [...names(SCHEMA[ENCRYPTION_SECTION]!.fields), ...Object.keys(MASTER_KEY_OPTIONS), ...names(ENGINE_FIELDS), ...names(embeddedStorageFields())];
}

/**
 * The embedded API's options (camelCase, as `new TdekvLevel(dir, options)` takes them),
 * validated by the same schema and validators as the TOML file: the same settings, the same
 * defaults, the same rules, and CONFIG_INVALID errors that name the option (in camelCase) and
 * what is allowed. `dataKeyRotationPeriod` and a KMS `timeout` also take a number of
 * milliseconds; relative paths resolve against the process's current directory. Options
 * whose value is `undefined` count as absent.
 */
export function configFromOptions(options: Readonly<Record<string, unknown>>, where: string, policy: OptionNamesPolicy = {}): OptionsConfig {
  const ctx: Context = { baseDir: process.cwd() };
  const encFields = SCHEMA[ENCRYPTION_SECTION]!.fields;
  const known = configOptionNames();
  const passthrough = policy.passthrough ?? [];
  for (const [key, value] of Object.entries(options)) {
    if (value === undefined || known.includes(key) || passthrough.includes(key)) continue;
    if (policy.unknown === 'near-misses' && closest(key, [...known, ...passthrough]) === undefined) continue;
    unknownOption(key, '', [...known, ...passthrough], 'in the options', where, sectionNote(key));
  }

  const enc = readOptionFields(encFields, options, '', 'in the options', ctx, where, true);
  for (const [option, section] of Object.entries(MASTER_KEY_OPTIONS)) {
    const raw = own(options, option);
    if (raw !== undefined) enc[SCHEMA[section]!.into.at(-1)!] = readMasterKeyOption(option, SCHEMA[section]!, raw, ctx, where);
  }
  const engine = readOptionFields(ENGINE_FIELDS, options, '', 'in the options', ctx, where, false) as EngineSettings;
  const storage = readOptionFields(embeddedStorageFields(), options, '', 'in the options', ctx, where, true) as { walRecoveryMode: WalRecoveryMode };

  const encryption = enc as unknown as EncryptionConfig;
  applyRules({ encryption, engine }, where, OPTION_NAMES);
  return { encryption, engine, walRecoveryMode: storage.walRecoveryMode };
}

function embeddedStorageFields(): Fields {
  const all = SCHEMA['storage']!.fields;
  return Object.fromEntries(EMBEDDED_STORAGE_FIELDS.map((name) => [name, all[name]!]));
}

/** A TOML section's name used as an option: say that the options are flat. */
function sectionNote(key: string): string {
  const sections = new Set(Object.keys(SCHEMA).flatMap((name) => name.split('.')).map(optionName));
  if (!sections.has(key) || MASTER_KEY_OPTIONS[key] !== undefined) return '';
  return (
    ` (options are flat: there is no ${key} object; the TOML file's [security.encryption] and [engine] settings are ` +
    `top-level options in camelCase, e.g. { dataEncryptionMethod: 'aes256-ctr', masterKey: { type: 'file', path }, writeBufferSize })`
  );
}

function readMasterKeyOption(option: string, section: Section, raw: unknown, ctx: Context, where: string): Record<string, unknown> {
  if (!isPlainObject(raw)) {
    return fail(`${where}: ${option} must be an object, but is ${describeOption(raw, true)}. For example ${MASTER_KEY_OPTION_EXAMPLE}.`);
  }
  const variants = section.variants ?? {};
  const tags = Object.keys(variants);
  const typeField = section.fields['type']!;
  const rawType = own(raw, 'type');
  if (rawType === undefined) return fail(`${where}: ${option}.type is required. Allowed: ${tags.map((t) => `'${t}'`).join(' | ')}.`);
  const tag = convertOption(`${option}.type`, typeField, rawType, ctx, where) as string;
  const fields = { ...section.fields, ...own(variants, tag) };
  const scope = `in ${option} with type '${tag}'`;
  const allowed = Object.keys(fields).map(optionName);
  for (const [key, value] of Object.entries(raw)) {
    if (value === undefined || allowed.includes(key)) continue;
    const owner = Object.entries(variants).find(([, f]) => Object.keys(f).map(optionName).includes(key));
    const note = owner === undefined ? '' : ` (${key} belongs to type '${owner[0]}')`;
    unknownOption(key, option, allowed, scope, where, note);
  }
  return readOptionFields(fields, raw, `${option}.`, scope, ctx, where, true);
}

function readOptionFields(
  fields: Fields,
  options: Readonly<Record<string, unknown>>,
  prefix: string,
  scope: string,
  ctx: Context,
  where: string,
  defaults: boolean,
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [tomlKey, field] of Object.entries(fields)) {
    const name = prefix + optionName(tomlKey);
    const raw = own(options, optionName(tomlKey));
    if (raw !== undefined) out[field.prop] = convertOption(name, field, raw, ctx, where);
    else if (field.required === true) fail(`${where}: ${name} is required ${scope}. Allowed: ${field.optionAllowed ?? field.allowed}.`);
    else if (defaults && field.default !== undefined) out[field.prop] = field.default(ctx);
  }
  return out;
}

function convertOption(name: string, field: Field, raw: unknown, ctx: Context, where: string): unknown {
  const allowed = field.optionAllowed ?? field.allowed;
  const shown = field.secret === true ? `${name} (value not shown)` : `${name} = ${showOption(raw)}`;
  let value: unknown = raw;
  if (field.kind === 'integer' && typeof raw === 'number' && Number.isInteger(raw)) value = BigInt(raw);
  else if (typeof raw === 'number' && field.fromNumber !== undefined) {
    try {
      return field.fromNumber(raw);
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      return fail(`${where}: ${shown} is invalid: ${reason}. Allowed: ${allowed}.`);
    }
  }
  const kind = typeof value === 'bigint' ? 'integer' : typeof value;
  if (kind !== field.kind) {
    const expected = KIND_NAMES[field.kind] + (field.fromNumber !== undefined ? ' or a number' : '');
    fail(`${where}: ${name} must be ${expected}, but is ${describeOption(raw, field.secret)}. Allowed: ${allowed}.`);
  }
  try {
    return field.convert(value as never, ctx);
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    return fail(`${where}: ${shown} is invalid: ${reason}. Allowed: ${allowed}.`);
  }
}

function unknownOption(key: string, parent: string, allowed: readonly string[], scope: string, where: string, note = ''): never {
  const full = parent === '' ? key : `${parent}.${key}`;
  const guess = closest(key, allowed);
  const hint = guess === undefined || note !== '' ? '' : ` Did you mean ${guess}?`;
  // As in the TOML reader, the value is not echoed.
  return fail(`${where}: unknown option ${full}${note}.${hint} Allowed ${scope}: ${allowed.join(', ') || '(nothing else)'}.`);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === Object.prototype || proto === null;
}

function describeOption(value: unknown, secret: boolean | undefined): string {
  const hide = secret === true;
  switch (typeof value) {
    case 'string':
      return hide ? 'a string' : `the string ${showOption(value)}`;
    case 'number':
      return hide ? 'a number' : `the number ${value}`;
    case 'bigint':
      return hide ? 'a bigint' : `the bigint ${value}`;
    case 'boolean':
      return hide ? 'a boolean' : `the boolean ${value}`;
    case 'function':
      return 'a function';
    case 'symbol':
      return 'a symbol';
    default:
      if (value === null) return 'null';
      if (Array.isArray(value)) return 'an array';
      return 'an object';
  }
}

function showOption(value: unknown): string {
  if (typeof value === 'string') return show(value);
  if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean') return String(value);
  return describeOption(value, true);
}
