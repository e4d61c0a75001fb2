/*
 * The configuration's public entry: what callers import. The pieces:
 *   schema.ts            every setting, its validator and default (one table for both readers)
 *   validators.ts        what a single setting accepts
 *   toml-config.ts       the TOML file reader (parseConfig, loadConfig)
 *   embedded-options.ts  the embedded API's options reader (configFromOptions)
 *   rules.ts             rules across several settings, run by both readers
 */
export { DEFAULT_LOG, DEFAULT_SERVER, DEFAULT_SYNC_WRITES, LOG_LEVELS, SYNC_WRITES, optionName } from './schema.js';
export { loadConfig, parseConfig, type ParseConfigOptions } from './toml-config.js';
export { configFromOptions, configOptionNames, type OptionNamesPolicy, type OptionsConfig } from './embedded-options.js';
