/** The WIT `error` case names. */
export type ErrorKind = 'denied' | 'invalid' | 'not-found' | 'limit' | 'unsupported' | 'failed';

/**
 * Base class of the SDK's errors; `kind` is the WIT case the error reaches
 * the host as. Host errors are thrown as the subclass of their case; any
 * other thrown value reaches the host as `failed`, with its message and the
 * messages of its `cause` chain.
 */
export declare class CairnError extends Error {
  constructor(message: string, options?: { cause?: unknown });
  /** The WIT case name. */
  readonly kind: ErrorKind;
  /** The same error (same case) with `context` before its message. */
  context(context: string): this;
}
/** The job's grants do not allow the request (origin, program, path, secret or function). */
export declare class Denied extends CairnError {
  readonly kind: 'denied';
}
/** The request or the params are malformed. */
export declare class Invalid extends CairnError {
  readonly kind: 'invalid';
}
/** What was asked for does not exist. */
export declare class NotFound extends CairnError {
  readonly kind: 'not-found';
}
/** A limit was reached: a body or output cap, a timeout. */
export declare class Limit extends CairnError {
  readonly kind: 'limit';
}
/** The capability is not available here. */
export declare class Unsupported extends CairnError {
  readonly kind: 'unsupported';
}
/** The operation was attempted and failed. Plain errors get this case. */
export declare class Failed extends CairnError {
  readonly kind: 'failed';
}
/** The error class of each WIT case name. */
export declare const KINDS: Readonly<Record<ErrorKind, new (message: string) => CairnError>>;
/** An error of WIT case `kind` with `message`. */
export declare function errorForKind(kind: ErrorKind, message: string): CairnError;
/** The message a thrown value reaches the host with (its `cause` chain joined by ": "). */
export declare function messageOf(error: unknown): string;
