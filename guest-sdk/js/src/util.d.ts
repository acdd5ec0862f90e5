/** A byte count for people: `512 B`, `1.5 KiB`, `3.0 MiB`. */
export declare function formatSize(bytes: number): string;
/**
 * Parse a duration the way Cairn's config does (`500ms`, `30s`, `1h30m`,
 * `90`); returns milliseconds. Throws `Invalid` naming what is wrong.
 */
export declare function parseDuration(text: string): number;
