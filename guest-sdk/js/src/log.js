// Structured logging into the host's log output and the run record
// (`cairn:plugin/log`):
//
//   log.info('copied index', { index: 'products', docs: 1200 });
//
// Field values are formatted with `String()`. Secret values known to the
// host are redacted. `console.log` also reaches the run log (stdout as info,
// stderr as warn), capped by the job's `output-limit`.

import { log as witLog } from 'cairn:plugin/log@0.1.0';

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error'];

/**
 * Emit one line at `level` (`'trace'`, `'debug'`, `'info'`, `'warn'` or
 * `'error'`) with key/value `fields`.
 * @param {string} level
 * @param {string} message
 * @param {Record<string, unknown>} [fields]
 */
export function log(level, message, fields = {}) {
  const lower = String(level).toLowerCase();
  if (!LEVELS.includes(lower)) {
    throw new TypeError(`unknown log level ${JSON.stringify(level)}: expected trace, debug, info, warn or error`);
  }
  const list = Object.entries(fields ?? {}).map(([key, value]) => ({ key, value: format(value) }));
  witLog(lower, String(message), list);
}

function format(value) {
  if (typeof value === 'string') return value;
  if (value !== null && typeof value === 'object') {
    try {
      return JSON.stringify(value);
    } catch {
      return String(value);
    }
  }
  return String(value);
}

/** Log at trace level. @param {string} message @param {Record<string, unknown>} [fields] */
export const trace = (message, fields) => log('trace', message, fields);
/** Log at debug level. @param {string} message @param {Record<string, unknown>} [fields] */
export const debug = (message, fields) => log('debug', message, fields);
/** Log at info level. @param {string} message @param {Record<string, unknown>} [fields] */
export const info = (message, fields) => log('info', message, fields);
/** Log at warn level. @param {string} message @param {Record<string, unknown>} [fields] */
export const warn = (message, fields) => log('warn', message, fields);
/** Log at error level. @param {string} message @param {Record<string, unknown>} [fields] */
export const error = (message, fields) => log('error', message, fields);
