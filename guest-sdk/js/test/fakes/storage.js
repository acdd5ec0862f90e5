// Fake of cairn:plugin/storage: each function calls host['storage.NAME'].
import { fake } from './host.js';

export const create = (...args) => fake('storage.create', ...args);
export const createFromCommand = (...args) => fake('storage.createFromCommand', ...args);
export const addTree = (...args) => fake('storage.addTree', ...args);
export const setNote = (...args) => fake('storage.setNote', ...args);
export const notes = (...args) => fake('storage.notes', ...args);
export const list = (...args) => fake('storage.list', ...args);
export const open = (...args) => fake('storage.open', ...args);
export const restoreToCommand = (...args) => fake('storage.restoreToCommand', ...args);
export const restoreTree = (...args) => fake('storage.restoreTree', ...args);
