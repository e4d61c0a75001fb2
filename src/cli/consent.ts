import { createInterface } from 'node:readline';

export const CONSENT_PHRASE = 'I consent';

/**
 * Asks on stderr and reads one line from stdin. Resolves false when stdin ends without the
 * exact phrase, so a script that forgot `--i-consent` is refused rather than stuck.
 */
export async function askConsent(warning: string, input: NodeJS.ReadableStream = process.stdin, output: NodeJS.WritableStream = process.stderr): Promise<boolean> {
  output.write(`${warning}\nType "${CONSENT_PHRASE}" to continue: `);
  const rl = createInterface({ input, terminal: false });
  try {
    for await (const line of rl) return line.trim() === CONSENT_PHRASE;
    return false;
  } finally {
    rl.close();
  }
}
