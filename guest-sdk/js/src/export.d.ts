import type { Context } from './context.js';
import type { Description } from './describe.js';

/** A value `JSON.stringify` takes, or a promise of one. */
export type JsonResult = unknown;

/**
 * A Task module: backs up and restores one kind of thing. Extend it and
 * export it with `exportTask`. Methods may be `async`.
 */
export declare class Task {
  /** What this task is, its params and needs. */
  describe(): Description;
  /** Back up; the result is kept in the run record, a thrown error fails the run. */
  backup(ctx: Context): JsonResult | Promise<JsonResult>;
  /** Restore from `ctx.snapshot`. */
  restore(ctx: Context): JsonResult | Promise<JsonResult>;
  /** Clean up outside the repository before the host forgets `ctx.snapshot`; returns `null` by default. */
  forget(ctx: Context): JsonResult | Promise<JsonResult>;
}

/** A Function module: one reusable step. Extend it and export it with `exportFunction`. */
declare class CairnFunction {
  /** What this function is, its params and needs. */
  describe(): Description;
  /** Run with the decoded JSON `params`; returns anything `JSON.stringify` takes. */
  call(params: any): JsonResult | Promise<JsonResult>;
}
export { CairnFunction as Function };

/** The WIT `error` value an export returns. */
export interface WitError {
  tag: 'denied' | 'invalid' | 'not-found' | 'limit' | 'unsupported' | 'failed';
  val: string;
}
/** The result an export returns to componentize-js. */
export type WitResult = { tag: 'ok'; val: string } | { tag: 'err'; val: WitError };
/** The WIT `context` record. */
export interface WitContext {
  job: string;
  runId: string;
  params: string;
  snapshot?: string;
}

/** The `cairn:plugin/task` world's exports: `export const { describe, backup, restore, forget } = exportTask(MyTask);` */
export declare function exportTask(task: (new () => Task) | Task): {
  describe(): object;
  backup(context: WitContext): Promise<WitResult>;
  restore(context: WitContext): Promise<WitResult>;
  forget(context: WitContext): Promise<WitResult>;
};

/** The `cairn:plugin/function` world's exports: `export const { describe, call } = exportFunction(MyFunction);` */
export declare function exportFunction(fn: (new () => CairnFunction) | CairnFunction): {
  describe(): object;
  call(params: string): Promise<WitResult>;
};
