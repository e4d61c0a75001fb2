import { isAbsolute, resolve } from 'node:path';
import { TdekvError } from '../../errors.js';

/**
 * Where a backup lives, parsed from `--storage URL` plus the storage flags, with every source
 * resolved: flag > URI query parameter > environment variable (docs/backup.md, "Storage
 * URLs"). Flag and parameter names are BR's, so a BR command line carries over unchanged.
 */
export type StorageSpec = LocalStorageSpec | S3StorageSpec | AzureStorageSpec;

export interface LocalStorageSpec {
  kind: 'local';
  /** Absolute directory. */
  root: string;
  displayUrl: string;
}

export type S3Sse = 'aws:kms' | 'AES256';

export interface S3StorageSpec {
  kind: 's3';
  bucket: string;
  /** Without leading or trailing `/`; '' for the bucket's root. */
  prefix: string;
  endpoint?: string;
  region?: string;
  sse?: S3Sse;
  sseKmsKeyId?: string;
  storageClass?: string;
  forcePathStyle: boolean;
  displayUrl: string;
}

export interface AzureStorageSpec {
  kind: 'azure';
  container: string;
  /** Without leading or trailing `/`; '' for the container's root. */
  prefix: string;
  accountName?: string;
  /** Secret: never printed. */
  accountKey?: string;
  /** Secret: never printed. Without the leading `?`. */
  sasToken?: string;
  endpoint?: string;
  encryptionScope?: string;
  /** Secret: never printed. Base64 of 32 bytes (the customer-provided AES-256 key). */
  encryptionKey?: string;
  displayUrl: string;
}

/** Flag values by flag name without the leading `--` (e.g. `'s3.sse-kms-key-id'`). */
export type StorageFlagValues = Partial<Record<StorageFlagName, string | boolean | undefined>>;

export type StorageFlagName =
  | 's3.endpoint'
  | 's3.region'
  | 's3.sse'
  | 's3.sse-kms-key-id'
  | 's3.storage-class'
  | 's3.force-path-style'
  | 'azblob.account-name'
  | 'azblob.account-key'
  | 'azblob.sas-token'
  | 'azblob.endpoint'
  | 'azblob.encryption-scope'
  | 'azblob.encryption-key';

export interface StorageFlag {
  name: StorageFlagName;
  /** For commander's `.option(flags, description)`. */
  flags: string;
  description: string;
  /** The property commander stores the value under (it camel-cases on `-` only). */
  attribute: string;
}

function flag(name: StorageFlagName, arg: string | undefined, description: string): StorageFlag {
  const attribute = name.split('-').reduce((acc, word) => acc + word[0]!.toUpperCase() + word.slice(1));
  return { name, flags: arg === undefined ? `--${name}` : `--${name} <${arg}>`, description, attribute };
}

/** Every storage flag, so each backup/restore command adds the same list. */
export const STORAGE_FLAGS: readonly StorageFlag[] = [
  flag('s3.endpoint', 'url', 'S3: endpoint URL (an S3-compatible service or emulator); turns on path-style addressing'),
  flag('s3.region', 'region', 'S3: region (default: AWS_REGION, else us-east-1)'),
  flag('s3.sse', 'method', 'S3: server-side encryption of every object written: aws:kms or AES256 (not needed on restore)'),
  flag('s3.sse-kms-key-id', 'id', 'S3: the KMS key for --s3.sse aws:kms (default: the bucket\'s AWS-managed key)'),
  flag('s3.storage-class', 'class', 'S3: storage class of every object written (e.g. STANDARD_IA)'),
  flag('s3.force-path-style', undefined, 'S3: path-style URLs (bucket in the path), for emulators and some S3-compatible services'),
  flag('azblob.account-name', 'name', 'Azure Blob: storage account (or AZURE_STORAGE_ACCOUNT)'),
  flag('azblob.account-key', 'key', 'Azure Blob: shared key of the account (or AZURE_STORAGE_KEY); never printed'),
  flag('azblob.sas-token', 'token', 'Azure Blob: a SAS token instead of the account key; never printed'),
  flag('azblob.endpoint', 'url', 'Azure Blob: service endpoint (default https://ACCOUNT.blob.core.windows.net)'),
  flag('azblob.encryption-scope', 'name', 'Azure Blob: encryption scope of every blob written (not needed on restore)'),
  flag('azblob.encryption-key', 'key', 'Azure Blob: customer-provided AES-256 key, base64 (or AZURE_ENCRYPTION_KEY); needed on restore too; never printed'),
];

/** Picks the storage flags out of commander's parsed options. */
export function storageFlagsFromOptions(opts: Record<string, unknown>): StorageFlagValues {
  const out: StorageFlagValues = {};
  for (const f of STORAGE_FLAGS) {
    const v = opts[f.attribute];
    if (typeof v === 'string' || typeof v === 'boolean') out[f.name] = v;
  }
  return out;
}

/** Query parameters whose values may be shown; every other one's value is redacted. */
const SHOWN_PARAMS = new Set([
  'endpoint',
  'region',
  'sse',
  'sse-kms-key-id',
  'storage-class',
  'force-path-style',
  'account-name',
  'encryption-scope',
]);

const S3_PARAMS = new Set(['endpoint', 'region', 'sse', 'sse-kms-key-id', 'storage-class', 'force-path-style']);
const AZURE_PARAMS = new Set(['account-name', 'account-key', 'sas-token', 'endpoint', 'encryption-scope', 'encryption-key']);

export const REDACTED = 'REDACTED';

/**
 * The URL as it may be shown: every query parameter value except the known harmless ones
 * (endpoint, region, names, scope) becomes REDACTED, as does a password in the authority.
 * Works on text that is not a valid URL too, since error messages show what the user typed.
 */
export function redactStorageUrl(url: string): string {
  const schemeMatch = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\//.exec(url);
  if (schemeMatch === null) return url; // a plain path: no query, no credentials
  let out = url;
  // user:password@ in the authority
  out = out.replace(/^([a-zA-Z][a-zA-Z0-9+.-]*:\/\/[^/?#@]*?):[^/?#@]*@/, `$1:${REDACTED}@`);
  const q = out.indexOf('?');
  if (q < 0) return out;
  const hash = out.indexOf('#', q);
  const query = hash < 0 ? out.slice(q + 1) : out.slice(q + 1, hash);
  const redacted = query
    .split('&')
    .map((pair) => {
      const eq = pair.indexOf('=');
      const rawName = eq < 0 ? pair : pair.slice(0, eq);
      let name: string;
      try {
        name = decodeURIComponent(rawName.replace(/\+/g, ' '));
      } catch {
        name = rawName;
      }
      if (eq < 0) return SHOWN_PARAMS.has(name) ? pair : rawName === '' ? '' : `${rawName}`;
      return SHOWN_PARAMS.has(name) ? pair : `${rawName}=${REDACTED}`;
    })
    .join('&');
  // A fragment can hold anything; it has no meaning here.
  return `${out.slice(0, q)}?${redacted}${hash < 0 ? '' : `#${REDACTED}`}`;
}

interface ParseContext {
  display: string;
}

function invalid(ctx: ParseContext, what: string): TdekvError {
  return new TdekvError('INVALID_ARGUMENT', `--storage ${ctx.display}: ${what}`);
}

function str(v: string | boolean | undefined): string | undefined {
  if (typeof v !== 'string') return undefined;
  return v === '' ? undefined : v;
}

interface Sourced<T> {
  value: T;
  /** For messages: `--azblob.encryption-key`, `URI parameter encryption-key`, `AZURE_ENCRYPTION_KEY`. */
  source: string;
}

/** flag > URI parameter > environment variable. */
function pick(
  flags: StorageFlagValues,
  params: Map<string, string>,
  env: NodeJS.ProcessEnv,
  flagName: StorageFlagName,
  param: string | undefined,
  envName?: string,
): Sourced<string> | undefined {
  const f = str(flags[flagName]);
  if (f !== undefined) return { value: f, source: `--${flagName}` };
  if (param !== undefined) {
    const p = params.get(param);
    if (p !== undefined && p !== '') return { value: p, source: `URI parameter ${param}` };
  }
  if (envName !== undefined) {
    const e = env[envName];
    if (e !== undefined && e !== '') return { value: e, source: envName };
  }
  return undefined;
}

function parseQuery(ctx: ParseContext, query: string, allowed: Set<string>, scheme: string): Map<string, string> {
  const params = new Map<string, string>();
  if (query === '') return params;
  for (const pair of query.split('&')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    let name: string;
    let value: string;
    try {
      name = decodeURIComponent((eq < 0 ? pair : pair.slice(0, eq)).replace(/\+/g, ' '));
      // `+` is a base64 character: in a key it must stay `+` unless percent-encoded as %2B,
      // which decodes the same; a literal space never occurs in the values we accept.
      value = eq < 0 ? '' : decodeURIComponent(pair.slice(eq + 1));
    } catch {
      throw invalid(ctx, `a query parameter is not valid percent-encoding: percent-encode reserved characters (% as %25, & as %26, + as %2B)`);
    }
    if (!allowed.has(name)) {
      const shown = /^[a-zA-Z0-9._-]{1,40}$/.test(name) ? `"${name}"` : 'with an unprintable name';
      throw invalid(ctx, `unknown query parameter ${shown} for ${scheme}://; known: ${[...allowed].join(', ')}`);
    }
    if (params.has(name)) throw invalid(ctx, `query parameter "${name}" is given twice: give it once`);
    params.set(name, value);
  }
  return params;
}

function splitLocation(rest: string): { first: string; prefix: string } {
  const slash = rest.indexOf('/');
  const first = slash < 0 ? rest : rest.slice(0, slash);
  const prefix = slash < 0 ? '' : rest.slice(slash + 1);
  return { first, prefix: prefix.replace(/^\/+|\/+$/g, '').replace(/\/{2,}/g, '/') };
}

function checkHttpUrl(ctx: ParseContext, flagOrParam: string, value: string): string {
  let u: URL;
  try {
    u = new URL(value);
  } catch {
    throw invalid(ctx, `${flagOrParam} is not a URL: give http(s)://host[:port][/path]`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw invalid(ctx, `${flagOrParam} must be an http:// or https:// URL`);
  return value.replace(/\/+$/, '');
}

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

/** The customer-provided key must decode to exactly 32 bytes (AES-256); never echo it. */
function checkEncryptionKey(ctx: ParseContext, key: Sourced<string>): void {
  const ok = key.value.length % 4 === 0 && BASE64.test(key.value) && Buffer.from(key.value, 'base64').length === 32;
  if (!ok) {
    throw invalid(
      ctx,
      `the Azure encryption key from ${key.source} is not the base64 of 32 bytes (an AES-256 key): ` +
        'generate one with `openssl rand -base64 32`' +
        (key.source.startsWith('URI') ? ', and percent-encode it in the URI (+ as %2B, / as %2F, = as %3D)' : ''),
    );
  }
}

export interface ParseStorageOptions {
  flags?: StorageFlagValues;
  env?: NodeJS.ProcessEnv;
  /** Relative plain paths resolve against this (default: process.cwd()). */
  cwd?: string;
}

/** Parses `--storage URL` and the storage flags; every problem is an INVALID_ARGUMENT naming the flag. */
export function parseStorageUrl(url: string, options: ParseStorageOptions = {}): StorageSpec {
  const flags = options.flags ?? {};
  const env = options.env ?? process.env;
  const ctx: ParseContext = { display: redactStorageUrl(url) };
  if (url === '') throw invalid(ctx, 'empty: give local:///path, a path, s3://bucket/prefix or azure://container/prefix');
  const schemeMatch = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\/(.*)$/s.exec(url);
  const usedFlags = (Object.keys(flags) as StorageFlagName[]).filter((k) => flags[k] !== undefined && flags[k] !== false);
  /** Flags of another backend are mistakes: a flag that silently did nothing would hide one. */
  const refuseFlags = (family: 's3.' | 'azblob.' | undefined, kind: string): void => {
    const wrong = usedFlags.find((k) => family === undefined || !k.startsWith(family));
    if (wrong !== undefined) throw invalid(ctx, `--${wrong} does not apply to ${kind} storage: remove it`);
  };

  if (schemeMatch === null) {
    refuseFlags(undefined, 'local');
    const root = isAbsolute(url) ? resolve(url) : resolve(options.cwd ?? process.cwd(), url);
    return { kind: 'local', root, displayUrl: `local://${root}` };
  }
  const scheme = schemeMatch[1]!.toLowerCase();
  const afterScheme = schemeMatch[2]!;
  const hashAt = afterScheme.indexOf('#');
  if (hashAt >= 0) throw invalid(ctx, 'a storage URL has no #fragment: remove it (percent-encode # as %23 in a value)');
  const qAt = afterScheme.indexOf('?');
  const rest = qAt < 0 ? afterScheme : afterScheme.slice(0, qAt);
  const query = qAt < 0 ? '' : afterScheme.slice(qAt + 1);

  switch (scheme) {
    case 'local':
    case 'file': {
      refuseFlags(undefined, 'local');
      if (query !== '') throw invalid(ctx, `${scheme}:// takes no query parameters: remove "?…"`);
      if (!rest.startsWith('/')) throw invalid(ctx, `${scheme}:// needs an absolute path, three slashes: ${scheme}:///var/backups/tdekv`);
      let path: string;
      try {
        path = decodeURIComponent(rest);
      } catch {
        throw invalid(ctx, 'the path is not valid percent-encoding');
      }
      const root = resolve(path);
      return { kind: 'local', root, displayUrl: `local://${root}` };
    }
    case 's3': {
      refuseFlags('s3.', 'S3');
      const params = parseQuery(ctx, query, S3_PARAMS, 's3');
      const { first: bucket, prefix } = splitLocation(rest);
      if (bucket === '') throw invalid(ctx, 'no bucket: give s3://bucket/prefix');
      if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) {
        throw invalid(ctx, `"${bucket}" is not a valid S3 bucket name (3–63 characters: lowercase letters, digits, dots, hyphens)`);
      }
      const endpointS = pick(flags, params, env, 's3.endpoint', 'endpoint');
      const endpoint = endpointS === undefined ? undefined : checkHttpUrl(ctx, endpointS.source, endpointS.value);
      const region = pick(flags, params, env, 's3.region', 'region')?.value;
      const sseS = pick(flags, params, env, 's3.sse', 'sse');
      let sse: S3Sse | undefined;
      if (sseS !== undefined) {
        if (sseS.value !== 'aws:kms' && sseS.value !== 'AES256') {
          throw invalid(ctx, `${sseS.source} must be aws:kms or AES256, not "${sseS.value}"`);
        }
        sse = sseS.value;
      }
      const kmsS = pick(flags, params, env, 's3.sse-kms-key-id', 'sse-kms-key-id');
      if (kmsS !== undefined && sse !== 'aws:kms') {
        throw invalid(ctx, `${kmsS.source} needs --s3.sse aws:kms (a KMS key is used only by KMS encryption): add --s3.sse aws:kms`);
      }
      const storageClass = pick(flags, params, env, 's3.storage-class', 'storage-class')?.value;
      const fpsFlag = flags['s3.force-path-style'];
      const fpsParam = params.get('force-path-style');
      if (fpsParam !== undefined && !['', 'true', 'false'].includes(fpsParam)) {
        throw invalid(ctx, 'URI parameter force-path-style must be true or false');
      }
      // Emulators and most S3-compatible services are reached by a bare host: path style.
      const forcePathStyle =
        fpsFlag === true || fpsFlag === 'true' || fpsParam === '' || fpsParam === 'true' || (endpoint !== undefined && fpsParam !== 'false');
      const spec: S3StorageSpec = { kind: 's3', bucket, prefix, forcePathStyle, displayUrl: ctx.display };
      if (endpoint !== undefined) spec.endpoint = endpoint;
      if (region !== undefined) spec.region = region;
      if (sse !== undefined) spec.sse = sse;
      if (kmsS !== undefined) spec.sseKmsKeyId = kmsS.value;
      if (storageClass !== undefined) spec.storageClass = storageClass;
      spec.displayUrl = describeS3(spec);
      return spec;
    }
    case 'azure':
    case 'azblob': {
      refuseFlags('azblob.', 'Azure Blob');
      const params = parseQuery(ctx, query, AZURE_PARAMS, scheme);
      const { first: container, prefix } = splitLocation(rest);
      if (container === '') throw invalid(ctx, 'no container: give azure://container/prefix');
      if (!/^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$/.test(container) && container !== '$root') {
        throw invalid(ctx, `"${container}" is not a valid Azure container name (3–63 lowercase letters, digits, single hyphens)`);
      }
      const endpointS = pick(flags, params, env, 'azblob.endpoint', 'endpoint');
      const endpoint = endpointS === undefined ? undefined : checkHttpUrl(ctx, endpointS.source, endpointS.value);
      const accountName = pick(flags, params, env, 'azblob.account-name', 'account-name', 'AZURE_STORAGE_ACCOUNT')?.value;
      const accountKey = pick(flags, params, env, 'azblob.account-key', 'account-key', 'AZURE_STORAGE_KEY')?.value;
      const sasToken = pick(flags, params, env, 'azblob.sas-token', 'sas-token')?.value;
      const scope = pick(flags, params, env, 'azblob.encryption-scope', 'encryption-scope');
      const key = pick(flags, params, env, 'azblob.encryption-key', 'encryption-key', 'AZURE_ENCRYPTION_KEY');
      if (scope !== undefined && key !== undefined) {
        throw invalid(
          ctx,
          `an encryption scope (${scope.source}) and a customer-provided key (${key.source}) are both given; Azure takes one: ` +
            'remove one of them' + (key.source === 'AZURE_ENCRYPTION_KEY' ? ' (unset AZURE_ENCRYPTION_KEY)' : ''),
        );
      }
      if (key !== undefined) checkEncryptionKey(ctx, key);
      if (endpoint === undefined && accountName === undefined) {
        throw invalid(ctx, 'no storage account: pass --azblob.account-name, the URI parameter account-name or AZURE_STORAGE_ACCOUNT (or --azblob.endpoint)');
      }
      const spec: AzureStorageSpec = { kind: 'azure', container, prefix, displayUrl: ctx.display };
      if (accountName !== undefined) spec.accountName = accountName;
      if (accountKey !== undefined) spec.accountKey = accountKey;
      if (sasToken !== undefined) spec.sasToken = sasToken.replace(/^\?/, '');
      if (endpoint !== undefined) spec.endpoint = endpoint;
      if (scope !== undefined) spec.encryptionScope = scope.value;
      if (key !== undefined) spec.encryptionKey = key.value;
      spec.displayUrl = describeAzure(spec);
      return spec;
    }
    default:
      throw invalid(ctx, `unknown scheme "${scheme.length <= 16 ? scheme : scheme.slice(0, 16) + '…'}://": use local:///path (or a plain path), s3://bucket/prefix or azure://container/prefix`);
  }
}

/** The display form of the resolved spec (what was used, wherever it came from), secrets redacted. */
function describeS3(spec: S3StorageSpec): string {
  const q: string[] = [];
  if (spec.endpoint !== undefined) q.push(`endpoint=${encodeURIComponent(spec.endpoint)}`);
  if (spec.region !== undefined) q.push(`region=${encodeURIComponent(spec.region)}`);
  if (spec.sse !== undefined) q.push(`sse=${encodeURIComponent(spec.sse)}`);
  if (spec.sseKmsKeyId !== undefined) q.push(`sse-kms-key-id=${encodeURIComponent(spec.sseKmsKeyId)}`);
  if (spec.storageClass !== undefined) q.push(`storage-class=${encodeURIComponent(spec.storageClass)}`);
  return `s3://${spec.bucket}/${spec.prefix}${q.length > 0 ? '?' + q.join('&') : ''}`;
}

function describeAzure(spec: AzureStorageSpec): string {
  const q: string[] = [];
  if (spec.accountName !== undefined) q.push(`account-name=${encodeURIComponent(spec.accountName)}`);
  if (spec.endpoint !== undefined) q.push(`endpoint=${encodeURIComponent(spec.endpoint)}`);
  if (spec.accountKey !== undefined) q.push(`account-key=${REDACTED}`);
  if (spec.sasToken !== undefined) q.push(`sas-token=${REDACTED}`);
  if (spec.encryptionScope !== undefined) q.push(`encryption-scope=${encodeURIComponent(spec.encryptionScope)}`);
  if (spec.encryptionKey !== undefined) q.push(`encryption-key=${REDACTED}`);
  return `azure://${spec.container}/${spec.prefix}${q.length > 0 ? '?' + q.join('&') : ''}`;
}
