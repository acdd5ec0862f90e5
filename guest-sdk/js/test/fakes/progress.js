// Fake of cairn:plugin/progress: each function calls host['progress.NAME'].
import { fake } from './host.js';

export const report = (...args) => fake('progress.report', ...args);
