// Fake of cairn:plugin/secrets: each function calls host['secrets.NAME'].
import { fake } from './host.js';

export const get = (...args) => fake('secrets.get', ...args);
