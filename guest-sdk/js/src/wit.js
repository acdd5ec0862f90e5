// Conversions between the WIT `error` variant and the SDK's errors.
//
// componentize-js represents a WIT `error` value as `{ tag: 'denied', val:
// 'message' }`. An import that returns `result<T, error>` returns `T` or
// throws a `ComponentError` whose `payload` is that value; an export returns
// `{ tag: 'ok', val }` or `{ tag: 'err', val: <error> }`.

import { CairnError, Failed, KINDS, errorForKind, messageOf } from './errors.js';

/**
 * The SDK error for a WIT `error` value.
 * @param {{ tag: string, val: string }} error
 * @returns {CairnError}
 */
export function errorFromWit(error) {
  if (error && typeof error === 'object' && error.tag in KINDS) {
    return errorForKind(error.tag, String(error.val));
  }
  return new Failed(messageOf(error));
}

/**
 * The WIT `error` value a thrown value reaches the host as: a `CairnError`
 * keeps its case, anything else is `failed`.
 * @param {unknown} error
 * @returns {{ tag: string, val: string }}
 */
export function errorToWit(error) {
  const tag = error instanceof CairnError ? error.kind : 'failed';
  return { tag, val: messageOf(error) };
}

/**
 * Call a generated import, throwing the SDK error for its WIT error.
 * @template T
 * @param {(...args: any[]) => T} fn
 * @param {...any} args
 * @returns {T}
 */
export function hostCall(fn, ...args) {
  try {
    return fn(...args);
  } catch (e) {
    if (e && typeof e === 'object' && 'payload' in e) {
      throw errorFromWit(/** @type {any} */ (e).payload);
    }
    throw e;
  }
}

/**
 * A u64 from the host (a BigInt) as a number.
 * @param {bigint | number} value
 * @returns {number}
 */
export function toNumber(value) {
  return typeof value === 'bigint' ? Number(value) : value;
}

/**
 * A JS number (or BigInt) for a u64 parameter.
 * @param {number | bigint} value
 * @param {string} what
 * @returns {bigint}
 */
export function toU64(value, what) {
  if (typeof value === 'bigint') return value;
  if (!Number.isFinite(value) || value < 0) {
    throw new RangeError(`${what} must be a non-negative number, got ${value}`);
  }
  return BigInt(Math.ceil(value));
}
