import { TdekvError } from '../errors.js';
import { ByteSink, getVarint } from './coding.js';

/** One SSTable as the manifest records it. smallest/largest are internal keys. */
export interface FileMeta {
  number: number;
  size: number;
  smallest: Buffer;
  largest: Buffer;
  entries: number;
}

/** A change to the set of live files, appended to the manifest; applying them in order rebuilds the tree. */
export interface VersionEdit {
  logNumber?: number;
  nextFileNumber?: number;
  lastSequence?: number;
  deletedFiles: Array<{ level: number; number: number }>;
  newFiles: Array<{ level: number; file: FileMeta }>;
}

const TAG_LOG_NUMBER = 1;
const TAG_NEXT_FILE = 2;
const TAG_LAST_SEQUENCE = 3;
const TAG_DELETED_FILE = 4;
const TAG_NEW_FILE = 5;

export function emptyEdit(): VersionEdit {
  return { deletedFiles: [], newFiles: [] };
}

export function encodeEdit(edit: VersionEdit): Buffer {
  const s = new ByteSink(256);
  if (edit.logNumber !== undefined) (s.varint(TAG_LOG_NUMBER), s.varint(edit.logNumber));
  if (edit.nextFileNumber !== undefined) (s.varint(TAG_NEXT_FILE), s.varint(edit.nextFileNumber));
  if (edit.lastSequence !== undefined) (s.varint(TAG_LAST_SEQUENCE), s.varint(edit.lastSequence));
  for (const d of edit.deletedFiles) {
    s.varint(TAG_DELETED_FILE);
    s.varint(d.level);
    s.varint(d.number);
  }
  for (const { level, file } of edit.newFiles) {
    s.varint(TAG_NEW_FILE);
    s.varint(level);
    s.varint(file.number);
    s.varint(file.size);
    s.varint(file.entries);
    s.lengthPrefixed(file.smallest);
    s.lengthPrefixed(file.largest);
  }
  return s.copy();
}

/** `where` names the manifest and offset for the error a malformed edit raises. */
export function decodeEdit(payload: Buffer, where: string): VersionEdit {
  const edit = emptyEdit();
  const pos = { offset: 0 };
  const bytes = (): Buffer => {
    const n = getVarint(payload, pos);
    if (pos.offset + n > payload.length) throw new RangeError('field runs past the record');
    const b = Buffer.from(payload.subarray(pos.offset, pos.offset + n));
    pos.offset += n;
    return b;
  };
  try {
    while (pos.offset < payload.length) {
      const tag = getVarint(payload, pos);
      switch (tag) {
        case TAG_LOG_NUMBER:
          edit.logNumber = getVarint(payload, pos);
          break;
        case TAG_NEXT_FILE:
          edit.nextFileNumber = getVarint(payload, pos);
          break;
        case TAG_LAST_SEQUENCE:
          edit.lastSequence = getVarint(payload, pos);
          break;
        case TAG_DELETED_FILE:
          edit.deletedFiles.push({ level: getVarint(payload, pos), number: getVarint(payload, pos) });
          break;
        case TAG_NEW_FILE: {
          const level = getVarint(payload, pos);
          const number = getVarint(payload, pos);
          const size = getVarint(payload, pos);
          const entries = getVarint(payload, pos);
          const smallest = bytes();
          const largest = bytes();
          edit.newFiles.push({ level, file: { number, size, entries, smallest, largest } });
          break;
        }
        default:
          throw new RangeError(`unknown field tag ${tag}`);
      }
    }
  } catch (err) {
    throw new TdekvError('DATA_CORRUPTED', `${where}: malformed version edit (${(err as Error).message}); the manifest is damaged: restore the data dir from a backup`, { cause: err });
  }
  return edit;
}
