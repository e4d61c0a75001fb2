/** What the lifecycle crash test and its child (lifecycle-scan-child.ts) share. */
export const SCAN_TUNING = { writeBufferSize: 64 * 1024, targetFileSizeBase: 32 * 1024, maxBytesForLevelBase: 256 * 1024, level0FileNumCompactionTrigger: 4 };
export const COUNTER = '!counter';
