// Artifacts of the current run's snapshot (`cairn:plugin/storage`).
//
// Bulk bytes should flow host-side: `createFromCommand` stores a command's
// stdout and `addTree` a granted directory without the bytes passing through
// the module; `restoreToCommand` and `restoreTree` bring them back. Small
// artifacts can be written with a `Writer` and read with a `Reader`:
//
//   // backup
//   storage.createFromCommand('app.dump', new Command('pg_dump', '-Fc', 'app'));
//   storage.addTree('uploads', '/srv/app/uploads');
//   const out = storage.create('manifest.json');
//   out.write(JSON.stringify({ format: 1 }));
//   out.finish();
//   storage.setNote('format', '1');
//
//   // restore
//   const manifest = storage.open('manifest.json').json();
//   storage.restoreToCommand('app.dump', new Command('pg_restore', '-d', 'app', '--clean')).check();
//   storage.restoreTree('uploads', '/srv/app/uploads', { overwrite: true });

import * as wit from 'cairn:plugin/storage@0.1.0';

import { Output } from './shell.js';
import { hostCall, toNumber, toU64 } from './wit.js';

/** How many bytes a Writer gathers before sending them to the host. */
export const WRITE_BUFFER = 64 * 1024;
/** How many bytes a Reader asks the host for at a time. */
export const READ_CHUNK = 64 * 1024;

const DISPOSE = Symbol.dispose || Symbol.for('dispose');
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * One artifact of a snapshot.
 * @typedef {{ name: string, kind: 'stream' | 'tree', size: number }} Artifact
 */

/** @returns {Artifact} */
function artifactFromWit(a) {
  return { name: a.name, kind: a.kind, size: toNumber(a.size) };
}

/**
 * A stream artifact being written (backup runs only). Writes are buffered;
 * `finish()` keeps the artifact, `discard()` (or never finishing) drops it.
 */
export class Writer {
  constructor(inner, name) {
    this.inner = inner;
    /** The artifact's name. */
    this.name = name;
    /** Bytes written so far. */
    this.written = 0;
    /** @type {Uint8Array[]} */
    this.chunks = [];
    this.buffered = 0;
  }

  /** Append `data` (text is UTF-8 encoded). @param {Uint8Array | string} data */
  write(data) {
    if (!this.inner) throw new TypeError(`artifact \`${this.name}\` is already finished or discarded`);
    const bytes = typeof data === 'string' ? encoder.encode(data) : data;
    this.chunks.push(bytes);
    this.buffered += bytes.length;
    this.written += bytes.length;
    if (this.buffered >= WRITE_BUFFER) this.flush();
    return this;
  }

  /** Send buffered bytes to the host. */
  flush() {
    if (!this.inner || this.buffered === 0) return;
    const all = new Uint8Array(this.buffered);
    let offset = 0;
    for (const chunk of this.chunks) {
      all.set(chunk, offset);
      offset += chunk.length;
    }
    this.chunks = [];
    this.buffered = 0;
    hostCall(() => this.inner.write(all));
  }

  /** Send any buffered bytes and complete the artifact. @returns {Artifact} */
  finish() {
    if (!this.inner) throw new TypeError(`artifact \`${this.name}\` is already finished or discarded`);
    this.flush();
    const inner = this.inner;
    this.inner = undefined;
    try {
      return artifactFromWit(hostCall(() => inner.finish()));
    } finally {
      inner[DISPOSE]?.();
    }
  }

  /** Drop the artifact unfinished (nothing is stored). */
  discard() {
    if (this.inner) {
      const inner = this.inner;
      this.inner = undefined;
      this.chunks = [];
      this.buffered = 0;
      inner[DISPOSE]?.();
    }
  }
}

/**
 * A stream artifact being read (restore runs only). `read()` gives the next
 * chunk; `bytes()`, `text()` and `json()` the rest; it is iterable, sync
 * and async (`for await (const chunk of reader)`).
 */
export class Reader {
  constructor(inner, name) {
    this.inner = inner;
    /** The artifact's name. */
    this.name = name;
  }

  /**
   * Up to `max` next bytes; an empty array at the end of the stream.
   * @param {number} [max]
   * @returns {Uint8Array}
   */
  read(max = READ_CHUNK) {
    if (!this.inner) return new Uint8Array(0);
    const inner = this.inner;
    const chunk = hostCall(() => inner.read(toU64(max, 'read size')));
    if (chunk.length === 0) this.close();
    return chunk;
  }

  /** The rest of the artifact. @returns {Uint8Array} */
  bytes() {
    const chunks = [...this];
    const all = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
    let offset = 0;
    for (const c of chunks) {
      all.set(c, offset);
      offset += c.length;
    }
    return all;
  }

  /** The rest of the artifact as text (UTF-8). */
  text() {
    return decoder.decode(this.bytes());
  }

  /** The rest of the artifact decoded from JSON. */
  json() {
    return JSON.parse(this.text());
  }

  /** Stop reading. */
  close() {
    if (this.inner) {
      const inner = this.inner;
      this.inner = undefined;
      inner[DISPOSE]?.();
    }
  }

  *[Symbol.iterator]() {
    for (;;) {
      const chunk = this.read();
      if (chunk.length === 0) return;
      yield chunk;
    }
  }

  async *[Symbol.asyncIterator]() {
    yield* this[Symbol.iterator]();
  }
}

/**
 * Start stream artifact `name` (backup runs only). Throws `Invalid` for a bad
 * or duplicate name, `Unsupported` during a restore.
 * @param {string} name
 */
export function create(name) {
  return new Writer(hostCall(wit.create, name), name);
}

/**
 * Run `command` and store its stdout as stream artifact `name`, without the
 * bytes passing through the module. Throws as `Command.run`, and `Failed` if
 * the command exits non-zero.
 * @param {string} name
 * @param {import('./shell.js').Command} command
 * @returns {Artifact}
 */
export function createFromCommand(name, command) {
  return artifactFromWit(hostCall(wit.createFromCommand, name, command.toWit()));
}

/**
 * Add the granted directory (or file) at `path` as tree artifact `name`.
 * Throws `Denied` for a path the job does not grant, `NotFound` if it does
 * not exist.
 * @param {string} name
 * @param {string} path
 * @returns {Artifact}
 */
export function addTree(name, path) {
  return artifactFromWit(hostCall(wit.addTree, name, path));
}

/**
 * Record a key/value note in the snapshot, readable again at restore
 * through `notes()`. Throws `Unsupported` during a restore.
 * @param {string} key
 * @param {string} value
 */
export function setNote(key, value) {
  hostCall(wit.setNote, key, String(value));
}

/** Notes of the snapshot being written or restored. @returns {Record<string, string>} */
export function notes() {
  return Object.fromEntries(hostCall(wit.notes));
}

/** Note `key` of the snapshot being written or restored. @param {string} key @returns {string | undefined} */
export function note(key) {
  return notes()[key];
}

/** Artifacts written so far (backup) or held by the snapshot (restore). @returns {Artifact[]} */
export function list() {
  return hostCall(wit.list).map(artifactFromWit);
}

/**
 * Open stream artifact `name` of the snapshot being restored. Throws
 * `NotFound` for an artifact the snapshot does not hold.
 * @param {string} name
 */
export function open(name) {
  return new Reader(hostCall(wit.open, name), name);
}

/**
 * Feed stream artifact `name` into `command`'s stdin and wait for it. A
 * non-zero exit is an `Output`, not an error; use `Output.check`.
 * @param {string} name
 * @param {import('./shell.js').Command} command
 * @returns {Output}
 */
export function restoreToCommand(name, command) {
  return Output.fromWit(hostCall(wit.restoreToCommand, name, command.toWit()), command.program);
}

/**
 * Restore tree artifact `name` under the granted directory `target` (created
 * if missing). A target that has entries is refused (`Invalid`) unless
 * `overwrite`: then restored entries replace what is there and other
 * entries stay. The host never writes through a symlink.
 * @param {string} name
 * @param {string} target
 * @param {{ overwrite?: boolean }} [options]
 * @returns {Artifact}
 */
export function restoreTree(name, target, options = {}) {
  return artifactFromWit(hostCall(wit.restoreTree, name, target, Boolean(options.overwrite)));
}
