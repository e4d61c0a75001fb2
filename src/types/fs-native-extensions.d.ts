/** The part of fs-native-extensions tdekv uses (the package ships no types). */
declare module 'fs-native-extensions' {
  interface NativeFsExtensions {
    /**
     * A non-blocking advisory lock on an open file: fcntl(F_OFD_SETLK) on Linux, flock() on
     * macOS. Held by the open file description, so a second open of the same file in the same
     * process conflicts too; released when the descriptor closes or the process dies.
     * Returns false when another open file description holds a conflicting lock.
     */
    tryLock(fd: number, offset?: number, length?: number, options?: { shared?: boolean }): boolean;
    unlock(fd: number, offset?: number, length?: number): void;
  }
  const extensions: NativeFsExtensions;
  export default extensions;
}
