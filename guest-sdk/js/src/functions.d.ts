/**
 * Call function `name` with `params` (JSON-serializable, `{}` by default);
 * returns its decoded JSON result. Tasks only: in a Function module it
 * throws `Unsupported`. Throws `Denied` unless the job grants the function,
 * `NotFound` for an unknown one, and the function's own errors with their case.
 */
export declare function call(name: string, params?: unknown): any;
