// Wall-clock time and sleeping (`cairn:plugin/time`).

import { now as witNow, sleep as witSleep } from 'cairn:plugin/time@0.1.0';

import { toNumber, toU64 } from './wit.js';

/** Milliseconds since the Unix epoch (UTC). @returns {number} */
export function nowMs() {
  return toNumber(witNow());
}

/** The current wall-clock time. @returns {Date} */
export function now() {
  return new Date(nowMs());
}

/**
 * Suspend the module for `ms` milliseconds. The host does not block a
 * thread meanwhile, and the run's timeout still applies. The module is
 * suspended during the call; the returned promise is already resolved, so
 * `await time.sleep(500)` reads as it behaves.
 * @param {number} ms
 * @returns {Promise<void>}
 */
export function sleep(ms) {
  witSleep(toU64(ms, 'sleep time'));
  return Promise.resolve();
}
