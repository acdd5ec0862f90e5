// Fake of cairn:plugin/shell: each function calls host['shell.NAME'].
import { fake } from './host.js';

export const run = (...args) => fake('shell.run', ...args);
