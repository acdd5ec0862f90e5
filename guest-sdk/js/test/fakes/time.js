// Fake of cairn:plugin/time: each function calls host['time.NAME'].
import { fake } from './host.js';

export const now = (...args) => fake('time.now', ...args);
export const sleep = (...args) => fake('time.sleep', ...args);
