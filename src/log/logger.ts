import { pino, type Logger } from 'pino';

export type { Logger };

/**
 * Structured logs on stderr. Fields that could carry user data or secrets are redacted by
 * path, so a careless `log.info({ key })` cannot leak them.
 */
export const REDACTED_FIELDS = ['key', 'value', 'keys', 'values', 'secret', 'password', 'masterKey', 'dataKey', '*.key', '*.value', '*.secret'];

export function createLogger(options: { level?: string; name?: string } = {}): Logger {
  return pino(
    {
      name: options.name ?? 'tdekv',
      level: options.level ?? process.env['TDEKV_LOG_LEVEL'] ?? 'info',
      redact: { paths: REDACTED_FIELDS, censor: '[redacted]' },
    },
    pino.destination(2),
  );
}

/** For library use and tests that do not want output. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
