import { pino, type DestinationStream, type Logger } from 'pino';
import { prettyFactory } from 'pino-pretty';
import type { LogFormat, LogLevel } from './log-config.js';

export type { Logger };

export { LOG_FORMATS, type LogFormat, type LogLevel } from './log-config.js';

/** Fields that may hold secrets: always censored. */
export const SECRET_FIELDS = ['secret', 'password', 'requirepass', 'adminPassword', 'masterKey', 'dataKey', '*.secret', '*.password'];

/** Fields that may hold user keys and values: censored while user data is redacted (`redact-info-log`). */
export const USER_DATA_FIELDS = ['key', 'value', 'keys', 'values', '*.key', '*.value'];

/**
 * Everything censored by default. Structured logs go to stderr; fields that could carry
 * user data or secrets are redacted by path, so a careless `log.info({ key })` cannot leak them.
 */
export const REDACTED_FIELDS = [...USER_DATA_FIELDS, ...SECRET_FIELDS];

export interface LoggerOptions {
  /** `[log] level`; else TDEKV_LOG_LEVEL; else "info". */
  level?: LogLevel | string;
  /**
   * `[log] format` (default "auto"). Pretty lines are made in-process, synchronously, from the
   * already redacted JSON line: nothing is lost at exit and redaction applies to them as well.
   */
  format?: LogFormat;
  name?: string;
  /**
   * `[security] redact-info-log` (default true): censor the user-data fields. Off, they are
   * logged, Buffers as escaped text (redactBytes). Secret fields are censored either way.
   */
  redactUserData?: boolean;
  /** Where the JSON lines go (default stderr): tests capture them here. */
  destination?: DestinationStream;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const redactUserData = options.redactUserData ?? true;
  const toTerminal = options.destination === undefined && process.stderr.isTTY === true;
  const sink = options.destination ?? pino.destination(2);
  return pino(
    {
      name: options.name ?? 'tdekv',
      level: options.level ?? process.env['TDEKV_LOG_LEVEL'] ?? 'info',
      redact: { paths: redactUserData ? REDACTED_FIELDS : SECRET_FIELDS, censor: '[redacted]' },
      // Unredacted keys and values would otherwise print as {"type":"Buffer","data":[…]}.
      ...(redactUserData ? {} : { serializers: { key: userData, value: userData } }),
    },
    resolveLogFormat(options.format ?? 'auto', toTerminal) === 'pretty' ? prettyStream(sink, toTerminal) : sink,
  );
}

/** What "auto" means: people read terminals; files, pipes and journald get JSON lines for machines. */
export function resolveLogFormat(format: LogFormat, toTerminal: boolean): 'json' | 'pretty' {
  return format === 'auto' ? (toTerminal ? 'pretty' : 'json') : format;
}

/**
 * pino-pretty's formatter called on each line as pino writes it, rather than its transport
 * (a worker thread, whose last lines can be lost when the process exits) or its stream (a
 * pipeline of buffered streams between pino and the fd). Colours only on a terminal.
 */
function prettyStream(sink: DestinationStream, colorize: boolean): DestinationStream {
  const pretty = prettyFactory({ colorize, translateTime: 'SYS:yyyy-mm-dd HH:MM:ss.l', ignore: 'pid,hostname' });
  return { write: (line: string) => sink.write(pretty(line)) };
}

/** For library use and tests that do not want output. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

/** Longest escaped form redactBytes returns before cutting it with "...". */
export const REDACT_MAX_CHARS = 64;

/**
 * A user key or value for a log line or an error message: "?" while user data is redacted
 * (TiKV's redact-info-log prints "?" too), else a printable form — the bytes as latin1,
 * JSON-escaped so control bytes and quotes cannot forge log lines, cut at REDACT_MAX_CHARS
 * with a "..." suffix.
 */
export function redactBytes(bytes: Uint8Array | string, on: boolean): string {
  if (on) return '?';
  const text = typeof bytes === 'string' ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
  let out = '';
  // Escaped a character at a time, so the cut never splits an escape sequence.
  for (const ch of text) {
    const escaped = JSON.stringify(ch).slice(1, -1);
    if (out.length + escaped.length > REDACT_MAX_CHARS) return `${out}...`;
    out += escaped;
  }
  return out;
}

function userData(v: unknown): unknown {
  return v instanceof Uint8Array || typeof v === 'string' ? redactBytes(v, false) : v;
}
