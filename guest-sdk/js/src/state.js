// Persistent key/value state, private to the job and shared by its runs
// (`cairn:plugin/state`):
//
//   const runs = (state.getJson('runs') ?? 0) + 1;
//   state.setJson('runs', runs);

import * as wit from 'cairn:plugin/state@0.1.0';

import { Failed, Invalid } from './errors.js';
import { hostCall } from './wit.js';

/** The value stored under `key`, or `undefined`. @param {string} key @returns {string | undefined} */
export function get(key) {
  return hostCall(wit.get, key) ?? undefined;
}

/** Store `value` (text) under `key`, replacing any previous value. @param {string} key @param {string} value */
export function set(key, value) {
  if (typeof value !== 'string') {
    throw new TypeError(`state.set stores text; use state.setJson for ${typeof value}`);
  }
  hostCall(wit.set, key, value);
}

/** Remove `key`. Removing a missing key is not an error. @param {string} key */
function remove(key) {
  hostCall(wit.delete, key);
}
export { remove as delete };

/** Keys that start with `prefix` (all by default), in lexical order. @param {string} [prefix] @returns {string[]} */
export function keys(prefix = '') {
  return hostCall(wit.listKeys, prefix);
}

/**
 * The JSON value stored under `key`, decoded; `defaultValue` when unset.
 * Throws `Failed` when the stored value is not JSON.
 * @param {string} key
 * @param {unknown} [defaultValue]
 */
export function getJson(key, defaultValue = undefined) {
  const text = get(key);
  if (text === undefined) return defaultValue;
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Failed(`state key \`${key}\` does not hold JSON: ${e.message}`);
  }
}

/** Store `value` as JSON under `key`. @param {string} key @param {unknown} value */
export function setJson(key, value) {
  let text;
  try {
    text = JSON.stringify(value);
  } catch (e) {
    throw new Invalid(`cannot serialize state key \`${key}\`: ${e.message}`);
  }
  if (text === undefined) throw new Invalid(`cannot serialize state key \`${key}\`: ${typeof value} is not JSON`);
  set(key, text);
}
