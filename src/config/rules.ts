import { DEFAULT_ENGINE_TUNING, tuningProblem, type EngineTuning } from '../engine/options.js';
import { insecureKmsEndpoint } from '../masterkey/kms-endpoint.js';
import { formatHostPort } from '../util/host-port.js';
import { fail, show } from './config-error.js';
import { TLS_PROPS } from './schema.js';
import type { EncryptionConfig, MasterKeyConfig, ServiceMasterKeyConfig, TdekvConfig, TlsConfig } from './types.js';

/*
 * Rules that span several settings, in one list that both readers run once every setting
 * has been read on its own: the TOML file (toml-config.ts) and the embedded options
 * (embedded-options.ts). A rule is written once; each reader says how its users name the
 * settings (SettingNames), so the error speaks the language of the place the value came from.
 */

/** A master key, by its TOML key under [security.encryption]. */
export type MasterKeyRole = 'master-key' | 'previous-master-key';

const MASTER_KEY_PROPS = { 'master-key': 'masterKey', 'previous-master-key': 'previousMasterKey' } as const satisfies Record<MasterKeyRole, keyof EncryptionConfig>;

/** How a reader's users name settings: the file's dotted kebab-case keys and [sections], or the flat camelCase options. */
export interface SettingNames {
  /** A key of [security.encryption]: "security.encryption.data-encryption-method" or "dataEncryptionMethod". */
  encryption(key: string): string;
  /** A key inside a master key: "security.encryption.master-key.endpoint" or "masterKey.endpoint". */
  masterKeySetting(role: MasterKeyRole, key: string): string;
  /** A master key as a whole, said to be set: "[security.encryption.master-key]" or "masterKey". */
  masterKey(role: MasterKeyRole): string;
  /** The same in a sentence about rotating: "master-key" or "masterKey". */
  masterKeyShort(role: MasterKeyRole): string;
  /** The service master key section: "[security.encryption.service-master-key]" or "serviceMasterKey". */
  readonly serviceMasterKey: string;
  /** What is missing when there is no master key: "[security.encryption.master-key]" or "masterKey option". */
  readonly noMasterKey: string;
  /** What "Add …" asks for when only the previous master key is given: "it" or "masterKey". */
  readonly addMasterKey: string;
  /** Ends every master-key error: an example master key, with its lead-in punctuation. */
  readonly masterKeyExample: string;
  /** An engine setting: "engine.level0-stop-writes-trigger" or "level0StopWritesTrigger". */
  engine(setting: keyof EngineTuning): string;
}

/** The settings the rules check. */
export interface RuleInput {
  encryption: EncryptionConfig;
  engine: Partial<EngineTuning>;
  /** The whole configuration when it comes from the file; the embedded options have no server, TLS or log settings. */
  file?: TdekvConfig;
}

type Rule = (input: RuleInput, where: string, names: SettingNames) => void;

/** A rule about settings only the file has. */
function fileOnly(rule: (config: TdekvConfig, where: string) => void): Rule {
  return (input, where) => {
    if (input.file !== undefined) rule(input.file, where);
  };
}

const RULES: readonly Rule[] = [
  ({ encryption: enc }, where, names) => {
    // The readers leave an absent master key out, so the type's promise is not yet kept here.
    if ((enc.masterKey as MasterKeyConfig | undefined) !== undefined) return;
    if (enc.dataEncryptionMethod !== 'plaintext') {
      fail(
        `${where}: ${names.encryption('data-encryption-method')} = "${enc.dataEncryptionMethod}" needs a master key, ` +
          `but there is no ${names.noMasterKey}. Add one, for example${names.masterKeyExample}`,
      );
    }
    if (enc.previousMasterKey !== undefined) {
      fail(
        `${where}: ${names.masterKey('previous-master-key')} is set without ${names.masterKey('master-key')}; ` +
          `while rotating, ${names.masterKeyShort('previous-master-key')} is the old key and ${names.masterKeyShort('master-key')} the new one. ` +
          `Add ${names.addMasterKey}, for example${names.masterKeyExample}`,
      );
    }
    enc.masterKey = { type: 'plaintext' };
  },
  ({ encryption }, where, names) => {
    // The readers put [security.encryption.service-master-key] beside the master keys; each
    // certificate master key takes it (its DMK is opened by it), and it is used nowhere else.
    const holder = encryption as EncryptionConfig & { serviceMasterKey?: ServiceMasterKeyConfig };
    const smk = holder.serviceMasterKey;
    delete holder.serviceMasterKey;
    let used = false;
    for (const role of ['master-key', 'previous-master-key'] as const) {
      const mk: MasterKeyConfig | undefined = encryption[MASTER_KEY_PROPS[role]];
      if (mk?.type !== 'certificate') continue;
      if (smk === undefined) {
        fail(
          `${where}: ${names.masterKey(role)} type = "certificate" needs a service master key to open the key store's database master key: ` +
            `add ${names.serviceMasterKey} with type = "file", "kms" or "pkcs11" (the machine's own key, outside the key store and the data dir).`,
        );
      }
      mk.serviceMasterKey = smk;
      used = true;
    }
    if (smk !== undefined && !used) {
      fail(`${where}: ${names.serviceMasterKey} is set, but no master key has type = "certificate", the only one that uses it. Remove it, or set type = "certificate".`);
    }
  },
  ({ encryption }, where, names) => {
    for (const role of ['master-key', 'previous-master-key'] as const) {
      const mk: MasterKeyConfig | undefined = encryption[MASTER_KEY_PROPS[role]];
      if (mk?.type !== 'kms') continue;
      const why = insecureKmsEndpoint(mk.endpoint, mk.allowInsecureEndpoint);
      if (why !== undefined) fail(`${where}: ${names.masterKeySetting(role, 'endpoint')} = ${show(mk.endpoint ?? '')} is refused: ${why}.`);
    }
  },
  fileOnly((config) => {
    // TiKV's redact-info-log is opt-in; here whoever encrypts the data would not want its
    // keys and values written to logs in clear, so encryption turns redaction on by default.
    const security = config.security as Partial<typeof config.security>;
    security.redactInfoLog ??= config.security.encryption.dataEncryptionMethod !== 'plaintext';
  }),
  fileOnly((config, where) => {
    // The schema reads the TLS paths flat from [security]; here they become `security.tls`, or an error if half given.
    const flat = config.security as unknown as Record<string, string | undefined>;
    const paths: Partial<Record<keyof typeof TLS_PROPS, string>> = {};
    for (const [key, prop] of Object.entries(TLS_PROPS) as Array<[keyof typeof TLS_PROPS, string]>) {
      if (flat[prop] !== undefined) paths[key] = flat[prop];
      delete flat[prop];
    }
    const { 'cert-path': certPath, 'key-path': keyPath, 'ca-path': caPath } = paths;
    if (certPath !== undefined && keyPath !== undefined) {
      config.security.tls = { certPath, keyPath, ...(caPath !== undefined ? { caPath } : {}) } satisfies TlsConfig;
      return;
    }
    const given = Object.keys(paths).map((k) => `security.${k}`);
    if (given.length === 0) return;
    const missing = (['cert-path', 'key-path'] as const).filter((k) => paths[k] === undefined).map((k) => `security.${k}`);
    fail(
      `${where}: ${given.join(' and ')} ${given.length === 1 ? 'is' : 'are'} set without ${missing.join(' and ')}. ` +
        'TLS needs cert-path (the server certificate, PEM) and key-path (its private key, PEM) together; ' +
        'ca-path (PEM) is optional and makes clients present a certificate signed by that CA.',
    );
  }),
  fileOnly((config, where) => {
    // One password for both users would make every client that can read data an admin, which is what the admin user is there to prevent.
    const { requirepass, adminPassword } = config.security;
    if (adminPassword !== undefined && adminPassword === requirepass) {
      fail(`${where}: security.admin-password is the same as security.requirepass (values not shown); give the admin user its own password, or remove admin-password.`);
    }
  }),
  fileOnly((config, where) => {
    const { addr, statusAddr } = config.server;
    if (addr.port !== 0 && addr.port === statusAddr.port && addr.host === statusAddr.host) {
      fail(`${where}: server.addr and server.status-addr are both ${formatHostPort(addr)}; give them different ports (or port 0 for a free one).`);
    }
  }),
  ({ engine }, where, names) => {
    // The engine's own rules (tuningProblem), so that they cannot drift from what Engine.open refuses.
    const problem = tuningProblem({ ...DEFAULT_ENGINE_TUNING, ...engine }, (setting) => names.engine(setting));
    if (problem !== undefined) fail(`${where}: ${problem}.`);
  },
];

/** Runs every cross-setting rule; fills in what depends on several settings (plaintext master key, redaction, TLS). */
export function applyRules(input: RuleInput, where: string, names: SettingNames): void {
  for (const rule of RULES) rule(input, where, names);
}
