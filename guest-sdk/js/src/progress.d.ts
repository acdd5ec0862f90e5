/** What `done` and `total` count. */
export type Unit = 'items' | 'bytes';
/** Report that `done` units of work are complete, out of `total` if known (default unit: items). */
export declare function report(done: number, total?: number, unit?: Unit): void;
