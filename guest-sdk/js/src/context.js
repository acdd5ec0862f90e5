// `Context`: what a run gives a task, and checked params.

import { Invalid } from './errors.js';

/** What a run gives a task: the job, the run, the params and, for a restore (or forget), the snapshot. */
export class Context {
  /**
   * A context for job `job`, run `runId`, with `params` (an object, or its
   * JSON text). Runs build it for you; this is for unit tests of task logic.
   * @param {string} job
   * @param {string} runId
   * @param {object | string} [params]
   * @param {string} [snapshot]
   */
  constructor(job, runId, params = {}, snapshot = undefined) {
    /** The job's name. */
    this.job = job;
    /** This run's identifier. */
    this.runId = runId;
    /** The params exactly as the host sent them: a JSON object as text. */
    this.paramsJson = typeof params === 'string' ? params : JSON.stringify(params);
    /** For a restore or a forget, the id of the snapshot; else `undefined`. */
    this.snapshot = snapshot ?? undefined;
    /** @type {Record<string, unknown> | undefined} */
    this._params = undefined;
  }

  /** The params as an object (parsed once); throws `Invalid` if they are not a JSON object. */
  get params() {
    if (this._params === undefined) {
      let value;
      try {
        value = JSON.parse(this.paramsJson);
      } catch (e) {
        throw new Invalid(`params are not valid JSON: ${/** @type {Error} */ (e).message}`);
      }
      if (value === null || typeof value !== 'object' || Array.isArray(value)) {
        throw new Invalid(`params must be a JSON object, got ${jsonType(value)}`);
      }
      this._params = value;
    }
    return /** @type {Record<string, unknown>} */ (this._params);
  }

  /**
   * The params checked against `spec`; see `fromParams`.
   * @param {Record<string, ParamSpec>} spec
   * @param {{ allowUnknown?: boolean }} [options]
   */
  paramsAs(spec, options) {
    return fromParams(this.params, spec, options);
  }
}

/**
 * @typedef {'string' | 'number' | 'integer' | 'boolean' | 'array' | 'object' | 'any'
 *   | 'string[]' | 'number[]' | 'object<string>'} ParamType
 * @typedef {ParamType | { type: ParamType, default?: unknown, optional?: boolean }} ParamSpec
 */

const TYPE_NAMES = {
  string: 'a string',
  number: 'a number',
  integer: 'an integer',
  boolean: 'a boolean',
  array: 'a list',
  object: 'an object',
  'string[]': 'a list of strings',
  'number[]': 'a list of numbers',
  'object<string>': 'an object of strings',
};

/**
 * `params` checked against `spec`, the way the Rust SDK's serde params are,
 * with kebab-case keys turned into camelCase properties:
 *
 * ```js
 * const p = fromParams(params, {
 *   url: 'string',                                    // required
 *   batch: { type: 'integer', default: 100 },         // optional, with a default
 *   'restore-command': { type: 'string[]', optional: true },
 * });
 * p.url; p.batch; p.restoreCommand;
 * ```
 *
 * Throws `Invalid` naming the problem (e.g. "invalid params: missing field
 * `url`") for a missing field, a value of the wrong type or, unless
 * `allowUnknown`, an unknown param. `null` counts as absent.
 * @param {unknown} params
 * @param {Record<string, ParamSpec>} spec
 * @param {{ allowUnknown?: boolean }} [options]
 * @returns {Record<string, any>}
 */
export function fromParams(params, spec, options = {}) {
  if (params === null || typeof params !== 'object' || Array.isArray(params)) {
    throw new Invalid(`invalid params: expected a JSON object, got ${jsonType(params)}`);
  }
  const input = /** @type {Record<string, unknown>} */ (params);
  if (!options.allowUnknown) {
    for (const key of Object.keys(input)) {
      if (!(key in spec)) {
        const expected = Object.keys(spec).map((k) => `\`${k}\``).join(', ');
        throw new Invalid(`invalid params: unknown field \`${key}\`, expected one of ${expected}`);
      }
    }
  }
  /** @type {Record<string, any>} */
  const out = {};
  for (const [key, entry] of Object.entries(spec)) {
    const { type, hasDefault, defaultValue, optional } =
      typeof entry === 'string'
        ? { type: entry, hasDefault: false, defaultValue: undefined, optional: false }
        : { type: entry.type, hasDefault: 'default' in entry, defaultValue: entry.default, optional: Boolean(entry.optional) };
    const value = input[key];
    let result;
    if (value === undefined || value === null) {
      if (hasDefault) result = structuredCloneJson(defaultValue);
      else if (optional) result = undefined;
      else throw new Invalid(`invalid params: missing field \`${key}\``);
    } else {
      checkType(`\`${key}\``, value, type);
      result = value;
    }
    out[camelCase(key)] = result;
  }
  return out;
}

/** @param {string} where @param {unknown} value @param {ParamType} type */
function checkType(where, value, type) {
  let ok;
  switch (type) {
    case 'any':
      return;
    case 'string':
      ok = typeof value === 'string';
      break;
    case 'number':
      ok = typeof value === 'number';
      break;
    case 'integer':
      ok = Number.isInteger(value);
      break;
    case 'boolean':
      ok = typeof value === 'boolean';
      break;
    case 'array':
      ok = Array.isArray(value);
      break;
    case 'object':
      ok = value !== null && typeof value === 'object' && !Array.isArray(value);
      break;
    case 'string[]':
      ok = Array.isArray(value) && value.every((v) => typeof v === 'string');
      break;
    case 'number[]':
      ok = Array.isArray(value) && value.every((v) => typeof v === 'number');
      break;
    case 'object<string>':
      ok = value !== null && typeof value === 'object' && !Array.isArray(value)
        && Object.values(value).every((v) => typeof v === 'string');
      break;
    default:
      throw new TypeError(`unknown param type ${JSON.stringify(type)}`);
  }
  if (!ok) {
    throw new Invalid(`invalid params: ${where} must be ${TYPE_NAMES[type]}, got ${jsonType(value)}`);
  }
}

/** `restore-command` → `restoreCommand`. @param {string} key */
function camelCase(key) {
  return key.replace(/[-_]([a-z0-9])/g, (_, c) => c.toUpperCase());
}

/** A fresh copy of a JSON default, so that callers may mutate it. */
function structuredCloneJson(value) {
  return value === undefined ? undefined : JSON.parse(JSON.stringify(value));
}

/** How a decoded JSON value is named in messages. @param {unknown} value */
export function jsonType(value) {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  switch (typeof value) {
    case 'string':
      return `string ${JSON.stringify(value).slice(0, 80)}`;
    case 'number':
      return `number ${value}`;
    case 'boolean':
      return 'a boolean';
    case 'object':
      return 'an object';
    default:
      return typeof value;
  }
}
