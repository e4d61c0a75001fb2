import { TdekvError } from '../errors.js';

/** Every problem in a configuration, from either reader, is CONFIG_INVALID. */
export function fail(message: string): never {
  throw invalid(message);
}

export function invalid(message: string): TdekvError {
  return new TdekvError('CONFIG_INVALID', message);
}

/** A value quoted in an error: strings as JSON, cut short so that a pasted blob does not flood the message. */
export function show(value: unknown): string {
  if (typeof value !== 'string') return String(value);
  const quoted = JSON.stringify(value);
  return quoted.length > 80 ? `${quoted.slice(0, 77)}..."` : quoted;
}
