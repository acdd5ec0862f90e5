// Progress reports, shown as a progress bar and kept in the run record
// (`cairn:plugin/progress`):
//
//   progress.report(3, 10);                    // 3 of 10 items done
//   progress.report(4096, undefined, 'bytes'); // total unknown

import { report as witReport } from 'cairn:plugin/progress@0.1.0';

import { toU64 } from './wit.js';

/**
 * Report that `done` units of work are complete, out of `total` if known.
 * @param {number} done
 * @param {number} [total]
 * @param {'items' | 'bytes'} [unit]
 */
export function report(done, total = undefined, unit = 'items') {
  if (unit !== 'items' && unit !== 'bytes') {
    throw new TypeError(`unknown progress unit ${JSON.stringify(unit)}: expected bytes or items`);
  }
  witReport(toU64(done, 'done'), total === undefined || total === null ? undefined : toU64(total, 'total'), unit);
}
