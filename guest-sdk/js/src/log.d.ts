/** Severity of a log line. */
export type Level = 'trace' | 'debug' | 'info' | 'warn' | 'error';
/** Key/value fields of a log line; values are formatted with `String()` (objects as JSON). */
export type Fields = Record<string, unknown>;
/** Emit one line at `level` with `fields`. Secret values known to the host are redacted. */
export declare function log(level: Level, message: string, fields?: Fields): void;
export declare function trace(message: string, fields?: Fields): void;
export declare function debug(message: string, fields?: Fields): void;
export declare function info(message: string, fields?: Fields): void;
export declare function warn(message: string, fields?: Fields): void;
export declare function error(message: string, fields?: Fields): void;
