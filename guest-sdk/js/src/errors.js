// Errors: one class per case of the WIT `error` variant.
//
// Every fallible SDK call throws a subclass of `CairnError` when the host
// refuses or fails a request, keeping the host's case: a request to an origin
// the job does not grant throws `Denied`, whose message names the missing
// grant. Throw them yourself to choose the case a run fails with.
//
// What a task or function throws reaches the host as follows:
// - a `CairnError` becomes its own case (`Invalid` → `invalid`); an error
//   from the host that is not caught is reported unchanged;
// - anything else becomes `failed`, with its message (`String(value)` for a
//   thrown non-Error), followed by the messages of its `cause` chain,
//   joined by ": " as in the Rust SDK.

/** Base class of the SDK's errors; `kind` is the WIT case name. */
export class CairnError extends Error {
  /**
   * @param {string} message
   * @param {{ cause?: unknown }} [options]
   */
  constructor(message, options) {
    super(String(message), options);
    this.name = new.target.name;
  }

  /** The WIT case: `denied`, `invalid`, `not-found`, `limit`, `unsupported` or `failed`. */
  get kind() {
    return 'failed';
  }

  /**
   * The same error (same case) with `context` before its message, like
   * `ErrorContext::context` in the Rust SDK.
   * @param {string} context
   * @returns {CairnError}
   */
  context(context) {
    const Kind = /** @type {typeof CairnError} */ (this.constructor);
    return new Kind(`${context}: ${this.message}`);
  }
}

/** The job's grants do not allow the request (origin, program, path, secret or function). */
export class Denied extends CairnError {
  get kind() {
    return 'denied';
  }
}

/** The request or the params are malformed: a bad URL, an empty argv, a missing param. */
export class Invalid extends CairnError {
  get kind() {
    return 'invalid';
  }
}

/** What was asked for does not exist: a program not installed, a missing artifact, an unknown function. */
export class NotFound extends CairnError {
  get kind() {
    return 'not-found';
  }
}

/** A limit was reached: a body or output cap, a timeout. */
export class Limit extends CairnError {
  get kind() {
    return 'limit';
  }
}

/** The capability is not available here (storage writes during a restore, functions in a Function). */
export class Unsupported extends CairnError {
  get kind() {
    return 'unsupported';
  }
}

/** The operation was attempted and failed. Plain errors get this case. */
export class Failed extends CairnError {
  get kind() {
    return 'failed';
  }
}

/** The error class of each WIT case name. */
export const KINDS = Object.freeze({
  denied: Denied,
  invalid: Invalid,
  'not-found': NotFound,
  limit: Limit,
  unsupported: Unsupported,
  failed: Failed,
});

/**
 * An error of WIT case `kind` (`"not-found"` …) with `message`.
 * @param {string} kind
 * @param {string} message
 * @returns {CairnError}
 */
export function errorForKind(kind, message) {
  const Kind = KINDS[/** @type {keyof typeof KINDS} */ (kind)];
  if (!Kind) {
    throw new TypeError(`unknown error kind ${JSON.stringify(kind)}; expected one of ${Object.keys(KINDS).join(', ')}`);
  }
  return new Kind(message);
}

/**
 * The message a thrown value reaches the host with: its own message (its
 * class name when that is empty), then each `cause`'s, joined by ": ".
 * @param {unknown} error
 * @returns {string}
 */
export function messageOf(error) {
  const parts = [];
  const seen = new Set();
  let current = error;
  while (current !== undefined && current !== null && !seen.has(current)) {
    seen.add(current);
    if (current instanceof Error) {
      parts.push(current.message || current.name);
      current = current.cause;
    } else {
      parts.push(typeof current === 'string' ? current : safeString(current));
      break;
    }
  }
  return parts.join(': ');
}

function safeString(value) {
  try {
    return typeof value === 'object' ? JSON.stringify(value) : String(value);
  } catch {
    return String(value);
  }
}
