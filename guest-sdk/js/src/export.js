// The `Task` and `Function` base classes and the glue that exports them as
// the component's `cairn:plugin/task` or `function` world.
//
// componentize-js calls the functions the built module exports by the
// world's names (`describe`, `backup`, `restore`, `forget`; or `describe`,
// `call`); `exportTask` and `exportFunction` make them from your class:
//
//   export const { describe, backup, restore, forget } = exportTask(MyTask);

import { Context } from './context.js';
import { Description } from './describe.js';
import { CairnError, Invalid } from './errors.js';
import * as log from './log.js';
import { errorToWit } from './wit.js';

/**
 * A Task module: backs up and restores one kind of thing. Extend it,
 * implement `describe`, `backup` and `restore` (and `forget` if the task
 * keeps something outside the repository), and export it with `exportTask`.
 * Methods may be `async`. Each run makes a new instance.
 */
export class Task {
  /** What this task is, its params and needs. @returns {Description} */
  describe() {
    throw new Error(`${this.constructor.name} does not implement describe()`);
  }

  /**
   * Back up. Artifacts written through `storage` form the run's snapshot,
   * committed only if this returns. The returned value (anything
   * `JSON.stringify` takes) is kept in the run record; a thrown error fails
   * the run.
   * @param {Context} ctx
   * @returns {unknown}
   */
  backup(ctx) {
    throw new Error(`${this.constructor.name} does not implement backup()`);
  }

  /** Restore from `ctx.snapshot`. @param {Context} ctx @returns {unknown} */
  restore(ctx) {
    throw new Error(`${this.constructor.name} does not implement restore()`);
  }

  /**
   * Clean up outside the repository before the host forgets snapshot
   * `ctx.snapshot` (retention, `cairn forget`). `storage` reads that
   * snapshot's notes and artifacts, as in a restore. A thrown error makes
   * the host keep the snapshot and call `forget` again at the next forget.
   * The default does nothing and returns `null`.
   * @param {Context} ctx
   * @returns {unknown}
   */
  forget(ctx) {
    return null;
  }
}

/**
 * A Function module: one reusable step a task (or a pipeline) calls. Extend
 * it, implement `describe` and `call`, and export it with `exportFunction`.
 */
class CairnFunction {
  /** What this function is, its params and needs. @returns {Description} */
  describe() {
    throw new Error(`${this.constructor.name} does not implement describe()`);
  }

  /**
   * Run with the decoded JSON `params` (usually an object; see
   * `fromParams`); returns anything `JSON.stringify` takes. A thrown error is
   * returned to the caller with its case and message.
   * @param {any} params
   * @returns {unknown}
   */
  call(params) {
    throw new Error(`${this.constructor.name} does not implement call()`);
  }
}

export { CairnFunction as Function };

/**
 * The world exports for `task` (a `Task` subclass, or an instance):
 * `export const { describe, backup, restore, forget } = exportTask(MyTask);`
 * @param {(new () => Task) | Task} task
 */
export function exportTask(task) {
  const make = factory(task, Task, 'Task');
  const context = (c) => new Context(c.job, c.runId, c.params, c.snapshot);
  return {
    describe: () => describeToWit(make().describe()),
    backup: (c) => finish('backup', () => make().backup(context(c))),
    restore: (c) => finish('restore', () => make().restore(context(c))),
    forget: (c) => finish('forget', () => make().forget(context(c))),
  };
}

/**
 * The world exports for `fn` (a `Function` subclass, or an instance):
 * `export const { describe, call } = exportFunction(MyFunction);`
 * @param {(new () => CairnFunction) | CairnFunction} fn
 */
export function exportFunction(fn) {
  const make = factory(fn, CairnFunction, 'Function');
  return {
    describe: () => describeToWit(make().describe()),
    call: (params) =>
      finish('call', () => {
        let decoded;
        try {
          decoded = JSON.parse(params);
        } catch (e) {
          throw new Invalid(`params are not valid JSON: ${e.message}`);
        }
        return make().call(decoded);
      }),
  };
}

function factory(target, Base, baseName) {
  if (typeof target === 'function') {
    if (!(target.prototype instanceof Base)) {
      throw new TypeError(`${target.name} does not extend cairn-guest's ${baseName}`);
    }
    return () => new target();
  }
  if (!(target instanceof Base)) {
    throw new TypeError(`${target} is not an instance of cairn-guest's ${baseName}`);
  }
  return () => target;
}

/**
 * Run an export: `{ tag: 'ok', val: <JSON text> }` or `{ tag: 'err', val:
 * <WIT error> }`, the result shape componentize-js takes from an export.
 */
async function finish(operation, run) {
  let value;
  try {
    value = await run();
  } catch (e) {
    if (!(e instanceof CairnError) && e instanceof Error && e.stack) {
      // A plain error is usually a bug: keep its stack in the run's log.
      log.debug(`${e.name}: ${e.message}\n${e.stack}`);
    }
    return { tag: 'err', val: errorToWit(e) };
  }
  let text;
  try {
    text = JSON.stringify(value === undefined ? null : value);
  } catch (e) {
    return { tag: 'err', val: { tag: 'failed', val: `${operation} returned a value that is not JSON: ${e.message}` } };
  }
  if (text === undefined) {
    return { tag: 'err', val: { tag: 'failed', val: `${operation} returned a value that is not JSON (${typeof value})` } };
  }
  return { tag: 'ok', val: text };
}

function describeToWit(description) {
  if (!(description instanceof Description)) {
    throw new TypeError(`describe() must return a cairn-guest Description, not ${description}`);
  }
  return description.toWit();
}
