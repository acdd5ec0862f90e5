/** A command to run: a granted program and its arguments. Builder methods return the command. */
export declare class Command {
  /** A command running `program` (a name granted in `allow.commands`) with `args`. */
  constructor(program: string, ...args: string[]);
  /** The program name. */
  readonly program: string;
  /** The arguments. */
  readonly argv: string[];
  /** Add one argument, passed as it is (no shell expansion). */
  arg(arg: string): this;
  /** Add arguments. */
  args(args: Iterable<string>): this;
  /** Set an environment variable; the value may contain `{{secret:NAME}}`. */
  env(key: string, value: string): this;
  /** Set several environment variables. */
  envs(vars: Record<string, string>): this;
  /** Set the working directory; it must lie under a granted path. */
  cwd(dir: string): this;
  /** Kill the command (its whole process group) after `ms` milliseconds. */
  timeout(ms: number): this;
  /** Feed `data` to the command's stdin (for `run` only). */
  stdin(data: Uint8Array | string): this;
  /**
   * Run the command and wait for it. A non-zero exit is an `Output`, not an
   * error. Throws `Denied` for a program not granted, `NotFound` for one not
   * installed, `Limit` on timeout.
   */
  run(): Output;
}

/** Run `program` with `args` and wait for it. */
export declare function run(program: string, ...args: string[]): Output;

/** How a command ended and what it printed. */
export declare class Output {
  /** Exit code; `undefined` when the process was killed by a signal. */
  readonly exitCode: number | undefined;
  /** Captured standard output, at most the host's output cap. */
  readonly stdout: Uint8Array;
  /** Captured standard error, at most the host's output cap. */
  readonly stderr: Uint8Array;
  readonly stdoutTruncated: boolean;
  readonly stderrTruncated: boolean;
  /** The program that produced this output. */
  readonly program: string;
  /** Whether the command exited with code 0. */
  readonly success: boolean;
  /** Standard output as text. */
  readonly stdoutText: string;
  /** Standard error as text. */
  readonly stderrText: string;
  /** The last non-empty line of standard error. */
  lastStderrLine(): string | undefined;
  /** The output itself if the command exited with 0; throws `Failed` naming the program, exit and last stderr line otherwise. */
  check(): this;
}
