/** The type of a param in a `fromParams` spec. */
export type ParamType =
  | 'string'
  | 'number'
  | 'integer'
  | 'boolean'
  | 'array'
  | 'object'
  | 'any'
  | 'string[]'
  | 'number[]'
  | 'object<string>';

/** A param in a `fromParams` spec: a type (required), or a type with a default or `optional: true`. */
export type ParamSpec = ParamType | { type: ParamType; default?: unknown; optional?: boolean };

/** What a run gives a task: the job, the run, the params and, for a restore (or forget), the snapshot. */
export declare class Context {
  /** For unit tests of task logic: runs build the context for you. */
  constructor(job: string, runId: string, params?: object | string, snapshot?: string);
  /** The job's name. */
  readonly job: string;
  /** This run's identifier. */
  readonly runId: string;
  /** The params exactly as the host sent them: a JSON object as text. */
  readonly paramsJson: string;
  /** For a restore or a forget, the id of the snapshot. */
  readonly snapshot: string | undefined;
  /** The params as an object; throws `Invalid` if they are not a JSON object. */
  readonly params: Record<string, unknown>;
  /** The params checked against `spec`; see `fromParams`. */
  paramsAs(spec: Record<string, ParamSpec>, options?: { allowUnknown?: boolean }): Record<string, any>;
}

/**
 * `params` checked against `spec`, kebab-case keys turned into camelCase
 * properties. Throws `Invalid` naming a missing field, a value of the wrong
 * type or (unless `allowUnknown`) an unknown param.
 */
export declare function fromParams(
  params: unknown,
  spec: Record<string, ParamSpec>,
  options?: { allowUnknown?: boolean },
): Record<string, any>;
