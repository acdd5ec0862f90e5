// Small helpers shared with the Rust SDK: sizes and durations as people
// write them.

import { Invalid } from './errors.js';

/**
 * A byte count for people: `512 B`, `1.5 KiB`, `3.0 MiB`.
 * @param {number} bytes
 * @returns {string}
 */
export function formatSize(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  let value = bytes / 1024;
  for (const unit of ['KiB', 'MiB', 'GiB', 'TiB', 'PiB']) {
    if (value < 1024) return `${value.toFixed(1)} ${unit}`;
    value /= 1024;
  }
  return `${value.toFixed(1)} EiB`;
}

const UNITS = { d: 86_400_000, h: 3_600_000, m: 60_000, s: 1_000, ms: 1 };
const ORDER = Object.keys(UNITS);
const EXAMPLES = 'e.g. `500ms`, `30s`, `5m`, `1h30m`, `1d`';

/**
 * Parse a duration the way Cairn's config does: `500ms`, `30s`, `5m`, `2h`,
 * `1d`, combinations from the largest unit to the smallest (`1h30m`,
 * `1m 30s`), or a plain number of seconds (`90`). Returns milliseconds.
 * Throws `Invalid` naming what is wrong, with examples.
 * @param {string} text
 * @returns {number}
 */
export function parseDuration(text) {
  const trimmed = String(text).trim();
  if (!trimmed) throw new Invalid(`a duration is empty; write one like ${EXAMPLES}`);
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const part = /(\d+)\s*([A-Za-z]*)\s*/y;
  let total = 0;
  let last = -1;
  part.lastIndex = 0;
  while (part.lastIndex < trimmed.length) {
    const at = part.lastIndex;
    const match = part.exec(trimmed);
    if (!match) {
      throw new Invalid(`\`${text}\` is not a duration: expected a number at \`${trimmed.slice(at)}\` (${EXAMPLES})`);
    }
    const [, number, unit] = match;
    const lower = unit.toLowerCase();
    if (!(lower in UNITS)) {
      const why = unit
        ? `unknown unit \`${unit}\`; use ms, s, m, h or d (${EXAMPLES})`
        : `\`${number}\` has no unit; use ms, s, m, h or d (${EXAMPLES})`;
      throw new Invalid(`\`${text}\` is not a duration: ${why}`);
    }
    const index = ORDER.indexOf(lower);
    if (index <= last) {
      throw new Invalid(`\`${text}\` is not a duration: write each unit once, largest first (e.g. \`1h30m\`)`);
    }
    last = index;
    total += Number(number) * UNITS[/** @type {keyof typeof UNITS} */ (lower)];
  }
  return total;
}
