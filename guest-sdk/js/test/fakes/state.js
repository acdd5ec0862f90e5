// Fake of cairn:plugin/state: each function calls host['state.NAME'].
import { fake } from './host.js';

export const get = (...args) => fake('state.get', ...args);
export const set = (...args) => fake('state.set', ...args);
export const listKeys = (...args) => fake('state.listKeys', ...args);
const del = (...args) => fake('state.delete', ...args);
export { del as delete };
