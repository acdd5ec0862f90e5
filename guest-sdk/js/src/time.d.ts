/** Milliseconds since the Unix epoch (UTC). */
export declare function nowMs(): number;
/** The current wall-clock time. */
export declare function now(): Date;
/**
 * Suspend the module for `ms` milliseconds (the run's timeout still
 * applies). The module is suspended during the call; the promise is
 * already resolved.
 */
export declare function sleep(ms: number): Promise<void>;
