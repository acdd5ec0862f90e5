// Running granted programs, argv only, never through a shell
// (`cairn:plugin/shell`):
//
//   const output = new shell.Command('psql', '--no-psqlrc', '-tAc', 'show server_version')
//     .env('PGPASSWORD', '{{secret:pg-password}}')
//     .timeout(10_000)
//     .run()
//     .check();
//   const version = output.stdoutText.trim();
//
// The environment starts empty; values may contain `{{secret:NAME}}`, which
// the host substitutes. Output is captured up to the host's cap. For bulk
// data use `storage.createFromCommand`, which streams a command's stdout
// into the repository host-side.

import { run as witRun } from 'cairn:plugin/shell@0.1.0';

import { Failed } from './errors.js';
import { hostCall, toU64 } from './wit.js';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A command to run: a granted program and its arguments. Builder methods return the command. */
export class Command {
  /**
   * A command running `program`, a name granted in `allow.commands` (for
   * example `pg_dump`), with `args`.
   * @param {string} program
   * @param {...string} args
   */
  constructor(program, ...args) {
    /** The program name. */
    this.program = String(program);
    /** @type {string[]} */
    this.argv = args.map(String);
    /** @type {[string, string][]} */
    this.environment = [];
    /** @type {string | undefined} */
    this.directory = undefined;
    /** @type {number | undefined} */
    this.timeoutMs = undefined;
    /** @type {Uint8Array | undefined} */
    this.input = undefined;
  }

  /** Add one argument, passed as it is (no shell expansion). @param {string} arg */
  arg(arg) {
    this.argv.push(String(arg));
    return this;
  }

  /** Add arguments. @param {Iterable<string>} args */
  args(args) {
    for (const a of args) this.argv.push(String(a));
    return this;
  }

  /** Set an environment variable; the value may contain `{{secret:NAME}}`. @param {string} key @param {string} value */
  env(key, value) {
    this.environment.push([String(key), String(value)]);
    return this;
  }

  /** Set several environment variables. @param {Record<string, string>} vars */
  envs(vars) {
    for (const [k, v] of Object.entries(vars)) this.env(k, v);
    return this;
  }

  /** Set the working directory; it must lie under a granted path. @param {string} dir */
  cwd(dir) {
    this.directory = String(dir);
    return this;
  }

  /** Kill the command (its whole process group) after `ms` milliseconds. @param {number} ms */
  timeout(ms) {
    this.timeoutMs = ms;
    return this;
  }

  /**
   * Feed `data` (text is UTF-8 encoded) to the command's standard input (for
   * `run` only; the storage functions ignore it).
   * @param {Uint8Array | string} data
   */
  stdin(data) {
    this.input = typeof data === 'string' ? encoder.encode(data) : data;
    return this;
  }

  /** The WIT `command` record (used by `storage`). */
  toWit() {
    return {
      program: this.program,
      args: [...this.argv],
      env: this.environment.map(([k, v]) => [k, v]),
      cwd: this.directory,
      timeoutMs: this.timeoutMs === undefined ? undefined : toU64(this.timeoutMs, 'timeout'),
    };
  }

  /**
   * Run the command and wait for it. A non-zero exit is an `Output`, not an
   * error; use `Output.check` to make it one. Throws `Denied` for a program
   * the job does not grant, `NotFound` for a granted program that is not
   * installed, `Limit` on timeout.
   * @returns {Output}
   */
  run() {
    return Output.fromWit(hostCall(witRun, this.toWit(), this.input), this.program);
  }
}

/**
 * Run `program` with `args` and wait for it: `new Command(program, ...args).run()`.
 * @param {string} program
 * @param {...string} args
 */
export function run(program, ...args) {
  return new Command(program, ...args).run();
}

/** How a command ended and what it printed. */
export class Output {
  /**
   * @param {{ exitCode?: number, stdout: Uint8Array, stderr: Uint8Array,
   *   stdoutTruncated?: boolean, stderrTruncated?: boolean }} fields
   * @param {string} program
   */
  constructor(fields, program) {
    /** Exit code; `undefined` when the process was killed by a signal. */
    this.exitCode = fields.exitCode ?? undefined;
    /** Captured standard output, at most the host's output cap. */
    this.stdout = fields.stdout;
    /** Captured standard error, at most the host's output cap. */
    this.stderr = fields.stderr;
    /** Whether stdout was cut at the cap. */
    this.stdoutTruncated = Boolean(fields.stdoutTruncated);
    /** Whether stderr was cut at the cap. */
    this.stderrTruncated = Boolean(fields.stderrTruncated);
    /** The program that produced this output. */
    this.program = program;
  }

  /** @param {any} output @param {string} program */
  static fromWit(output, program) {
    return new Output(output, program);
  }

  /** Whether the command exited with code 0. */
  get success() {
    return this.exitCode === 0;
  }

  /** Standard output as text (invalid UTF-8 replaced). */
  get stdoutText() {
    return decoder.decode(this.stdout);
  }

  /** Standard error as text (invalid UTF-8 replaced). */
  get stderrText() {
    return decoder.decode(this.stderr);
  }

  /** The last non-empty line of standard error, if any. @returns {string | undefined} */
  lastStderrLine() {
    const lines = this.stderrText.split('\n').map((l) => l.trim()).filter(Boolean);
    return lines.length ? lines[lines.length - 1] : undefined;
  }

  /**
   * The output itself if the command exited with code 0; throws `Failed`
   * otherwise: "command `pg_dump` exited with code 1: <last stderr line>".
   */
  check() {
    if (this.success) return this;
    const how = this.exitCode === undefined ? 'was killed by a signal' : `exited with code ${this.exitCode}`;
    const line = this.lastStderrLine();
    throw new Failed(`command \`${this.program}\` ${how}${line ? `: ${line}` : ''}`);
  }
}
