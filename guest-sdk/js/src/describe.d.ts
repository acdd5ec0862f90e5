/** One param a module accepts, as declared in its `Description`. */
export declare class Param {
  constructor(name: string, description: string, options?: { required?: boolean; default?: unknown });
  /** A param the job must set. */
  static required(name: string, description: string): Param;
  /** A param the job may leave out; `defaultValue` documents the value used then. */
  static optional(name: string, description: string, defaultValue?: unknown): Param;
  readonly name: string;
  readonly description: string;
  readonly required: boolean;
  readonly hasDefault: boolean;
  readonly default: unknown;
}

/** Capabilities a module needs: literals, or `{param}` references to job params. */
export interface Needs {
  http: string[];
  commands: string[];
  paths: string[];
  secrets: string[];
  functions: string[];
}

/**
 * What a module is, the params it takes and the capabilities it needs.
 * Builder methods return the description, so calls chain.
 */
export declare class Description {
  /** A module called `name` (its short machine name) at semver `version`. */
  constructor(name: string, version: string);
  readonly name: string;
  readonly version: string;
  readonly summaryText: string;
  readonly params: Param[];
  readonly needs: Needs;
  /** The one-line summary shown by `cairn plugin list`. */
  summary(summary: string): this;
  /** Declare a param. */
  param(param: Param): this;
  /** Declare an HTTP origin or URL the module requests (literal or `{param}`). */
  needsHttp(entry: string): this;
  /** Declare a program the module runs (literal or `{param}`). */
  needsCommand(entry: string): this;
  /** Declare a file-system path the module reads or writes (literal or `{param}`). */
  needsPath(entry: string): this;
  /** Declare a secret the module injects or reads (literal or `{param}`). */
  needsSecret(entry: string): this;
  /** Declare a function a task calls (literal or `{param}`). */
  needsFunction(entry: string): this;
}
