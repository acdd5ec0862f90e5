import type { Command, Output } from './shell.js';

/** One artifact of a snapshot. */
export interface Artifact {
  /** Name, unique within the snapshot. */
  name: string;
  /** A byte stream or a directory tree. */
  kind: 'stream' | 'tree';
  /** Size in bytes (sum of file sizes for a tree). */
  size: number;
}

export declare const WRITE_BUFFER: number;
export declare const READ_CHUNK: number;

/** A stream artifact being written (backup runs only); `finish()` keeps it. */
export declare class Writer {
  readonly name: string;
  /** Bytes written so far. */
  readonly written: number;
  /** Append `data` (text is UTF-8 encoded). */
  write(data: Uint8Array | string): this;
  /** Send buffered bytes to the host. */
  flush(): void;
  /** Complete the artifact. */
  finish(): Artifact;
  /** Drop the artifact unfinished. */
  discard(): void;
}

/** A stream artifact being read (restore runs only); iterable, sync and async. */
export declare class Reader implements Iterable<Uint8Array>, AsyncIterable<Uint8Array> {
  readonly name: string;
  /** Up to `max` next bytes; an empty array at the end. */
  read(max?: number): Uint8Array;
  /** The rest of the artifact. */
  bytes(): Uint8Array;
  /** The rest as UTF-8 text. */
  text(): string;
  /** The rest decoded from JSON. */
  json(): any;
  /** Stop reading. */
  close(): void;
  [Symbol.iterator](): Iterator<Uint8Array>;
  [Symbol.asyncIterator](): AsyncIterator<Uint8Array>;
}

/** Start stream artifact `name` (backup runs only). */
export declare function create(name: string): Writer;
/** Run `command` and store its stdout as stream artifact `name`, host-side. */
export declare function createFromCommand(name: string, command: Command): Artifact;
/** Add the granted directory (or file) at `path` as tree artifact `name`. */
export declare function addTree(name: string, path: string): Artifact;
/** Record a key/value note in the snapshot (backup runs only). */
export declare function setNote(key: string, value: string): void;
/** Notes of the snapshot being written or restored. */
export declare function notes(): Record<string, string>;
/** Note `key` of the snapshot being written or restored. */
export declare function note(key: string): string | undefined;
/** Artifacts written so far (backup) or held by the snapshot (restore). */
export declare function list(): Artifact[];
/** Open stream artifact `name` of the snapshot being restored. */
export declare function open(name: string): Reader;
/** Feed stream artifact `name` into `command`'s stdin and wait for it. */
export declare function restoreToCommand(name: string, command: Command): Output;
/** Restore tree artifact `name` under the granted directory `target`; a non-empty target needs `overwrite`. */
export declare function restoreTree(name: string, target: string, options?: { overwrite?: boolean }): Artifact;
