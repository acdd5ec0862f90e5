// The JavaScript guest SDK for Cairn: write backup Task and Function modules
// as ES modules, build them into WebAssembly components with
// componentize-js (see ../README.md), and let a Cairn job run them.
//
//   import { Task, Description, Param, exportTask, log } from 'cairn-guest';
//
//   class Hello extends Task {
//     describe() {
//       return new Description('hello-task', '0.1.0')
//         .summary('Greets someone')
//         .param(Param.required('name', 'Who to greet'));
//     }
//     async backup(ctx) {
//       const { name } = ctx.paramsAs({ name: 'string' });
//       log.info(`hello, ${name}`);
//       return { greeting: `hello, ${name}` };
//     }
//     restore(ctx) {
//       return {};
//     }
//   }
//
//   export const { describe, backup, restore, forget } = exportTask(Hello);

export * as functions from './functions.js';
export * as http from './http.js';
export * as log from './log.js';
export * as progress from './progress.js';
export * as secrets from './secrets.js';
export * as shell from './shell.js';
export * as state from './state.js';
export * as storage from './storage.js';
export * as time from './time.js';

export { Context, fromParams } from './context.js';
export { Description, Param } from './describe.js';
export { CairnError, Denied, Failed, Invalid, Limit, NotFound, Unsupported, errorForKind } from './errors.js';
export { Function, Task, exportFunction, exportTask } from './export.js';
export { formatSize, parseDuration } from './util.js';
