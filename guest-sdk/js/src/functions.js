// Calling Function modules from a task (`cairn:plugin/functions`). Tasks
// only: built for the `function` world (which does not import it), every
// call throws `Unsupported`.
//
//   const health = functions.call('http-request', { url: `${url}/_cluster/health` });

import { call as witCall } from 'cairn:plugin/functions@0.1.0';

import { Failed, Invalid, Unsupported } from './errors.js';
import { hostCall } from './wit.js';

/**
 * Call function `name` (a built-in such as `http-request`, or one declared in
 * the config's `[functions]`) with `params` (anything `JSON.stringify`
 * takes, `{}` by default); returns its decoded JSON result. Each call runs in
 * a fresh sandbox with the job's grants.
 *
 * Throws `Denied` unless the job grants the function in `allow.functions`,
 * `NotFound` for an unknown function, and whatever error the function itself
 * throws, with its case.
 * @param {string} name
 * @param {unknown} [params]
 * @returns {any}
 */
export function call(name, params = {}) {
  if (typeof witCall !== 'function') {
    throw new Unsupported(`cannot call function \`${name}\`: only Task modules can call functions`);
  }
  let text;
  try {
    text = JSON.stringify(params ?? {});
  } catch (e) {
    throw new Invalid(`cannot serialize params for function \`${name}\`: ${e.message}`);
  }
  const result = hostCall(witCall, name, text);
  try {
    return JSON.parse(result);
  } catch (e) {
    throw new Failed(`function \`${name}\` returned invalid JSON: ${e.message}`);
  }
}
