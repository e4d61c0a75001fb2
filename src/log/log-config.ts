/** pino's levels, as `[log] level` and TDEKV_LOG_LEVEL name them. */
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

/** `[log] format`: "auto" is "pretty" when the lines go to a terminal, else "json". */
export const LOG_FORMATS = ['auto', 'json', 'pretty'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/** `[log]`: the log layer's own settings; config/ reads them from TOML. */
export interface LogConfig {
  /** `level`: pino level (default "info"). */
  level: LogLevel;
  /** `format` (default "auto": readable lines on a terminal, JSON lines otherwise). */
  format: LogFormat;
}
