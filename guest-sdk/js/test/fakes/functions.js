// Fake of cairn:plugin/functions: each function calls host['functions.NAME'].
import { fake } from './host.js';

export const call = (...args) => fake('functions.call', ...args);
