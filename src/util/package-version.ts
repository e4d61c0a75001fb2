import { readFileSync } from 'node:fs';

/** tdekv's version, from package.json (two levels above the compiled dist/src/util/). */
export const PACKAGE_VERSION = (JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
