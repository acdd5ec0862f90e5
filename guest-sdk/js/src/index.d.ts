// Type declarations of the JavaScript guest SDK for Cairn (package
// `cairn-guest`); see index.js and ../README.md.

export * as functions from './functions.js';
export * as http from './http.js';
export * as log from './log.js';
export * as progress from './progress.js';
export * as secrets from './secrets.js';
export * as shell from './shell.js';
export * as state from './state.js';
export * as storage from './storage.js';
export * as time from './time.js';

export { Context, fromParams, type ParamSpec, type ParamType } from './context.js';
export { Description, Param, type Needs } from './describe.js';
export { CairnError, Denied, Failed, Invalid, Limit, NotFound, Unsupported, errorForKind, type ErrorKind } from './errors.js';
export { Function, Task, exportFunction, exportTask } from './export.js';
export { formatSize, parseDuration } from './util.js';
