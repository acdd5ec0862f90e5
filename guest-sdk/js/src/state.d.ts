/** The value stored under `key`, or `undefined`. */
export declare function get(key: string): string | undefined;
/** Store `value` (text) under `key`, replacing any previous value. */
export declare function set(key: string, value: string): void;
declare function remove(key: string): void;
/** Remove `key`. Removing a missing key is not an error. */
export { remove as delete };
/** Keys that start with `prefix` (all by default), in lexical order. */
export declare function keys(prefix?: string): string[];
/** The JSON value stored under `key`, decoded; `defaultValue` when unset. Throws `Failed` for non-JSON. */
export declare function getJson<T = any>(key: string, defaultValue?: T): T;
/** Store `value` as JSON under `key`. */
export declare function setJson(key: string, value: unknown): void;
