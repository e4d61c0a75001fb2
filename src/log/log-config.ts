/** pino's levels, as `[log] level` and TDEKV_LOG_LEVEL name them. */
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

/** `[log]`: the log layer's own settings; config/ reads them from TOML. */
export interface LogConfig {
  /** `level`: pino level (default "info"). */
  level: LogLevel;
}
