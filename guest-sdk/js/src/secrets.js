// Reading secret values (`cairn:plugin/secrets`).
//
// Most modules never need this: HTTP header values and command environment
// may contain `{{secret:NAME}}`, which the host replaces without the module
// seeing the value. Reading a value needs the job to list the secret in
// `allow.readable-secrets`.

import { get as witGet } from 'cairn:plugin/secrets@0.1.0';

import { hostCall } from './wit.js';

/**
 * The value of secret `name`; throws `Denied` unless the job grants reading it.
 * @param {string} name
 * @returns {string}
 */
export function get(name) {
  return hostCall(witGet, name);
}
