// Fake of cairn:plugin/http: each function calls host['http.NAME'].
import { fake } from './host.js';

export const send = (...args) => fake('http.send', ...args);
export const start = (...args) => fake('http.start', ...args);
