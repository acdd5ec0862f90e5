#!/usr/bin/env node
// Build a Cairn plug-in written in JavaScript into a WebAssembly component.
//
//   node guest-sdk/js/build.mjs --world task|function [--wit DIR]
//       [--bindings DIR] -o OUT.wasm ENTRY.js
//
// Usually run through guest-sdk/js/build.sh, which installs the pinned tools
// first and sets CAIRN_JS_TOOLS. Two steps:
//
// 1. rolldown bundles ENTRY, the modules it imports and the SDK (imported as
//    `cairn-guest`) into one ES module, OUT_DIR/<name>.bundle.js. Imports of
//    `cairn:plugin/*` stay imports: componentize-js provides them. Built for
//    the `function` world, which does not import `cairn:plugin/functions`,
//    that import becomes an empty stub (the SDK then throws `Unsupported`).
// 2. componentize-js generates the bindings of the world from the WIT (the
//    repository's wit/, or --wit / $CAIRN_WIT), splices them into the
//    StarlingMonkey engine, runs the bundle's top level at build time
//    (Wizer) and writes the component. Its own `http` and `fetch-event`
//    features are disabled: HTTP goes through `cairn:plugin/http`, which the
//    job's grants govern; the host provides no `wasi:http`.
//
// --bindings DIR also writes the generated JavaScript bindings, imports and
// exports there, for reading.

import { mkdir, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const sdk = dirname(fileURLToPath(import.meta.url));

const USAGE = 'usage: build.mjs --world task|function [--wit DIR] [--bindings DIR] -o OUT.wasm ENTRY.js';

async function main() {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      world: { type: 'string' },
      wit: { type: 'string' },
      out: { type: 'string', short: 'o' },
      bindings: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const world = values.world;
  if (world !== 'task' && world !== 'function') fail(`--world must be task or function\n${USAGE}`);
  if (!values.out || positionals.length !== 1) fail(USAGE);
  const entry = resolve(positionals[0]);
  const out = resolve(values.out);
  const wit = resolve(values.wit ?? process.env.CAIRN_WIT ?? join(sdk, '..', '..', 'wit'));
  if (!(await exists(join(wit, 'worlds.wit')))) {
    fail(`no WIT found at ${wit}; pass --wit or set CAIRN_WIT to the wit/ directory of Cairn`);
  }
  const tools = process.env.CAIRN_JS_TOOLS ?? join(process.env.HOME ?? '', '.cache', 'cairn-tools', 'js');
  const rolldown = await importTool(tools, 'rolldown/dist/index.mjs');
  const { componentize } = await importTool(tools, '@bytecodealliance/componentize-js/src/componentize.js');

  await mkdir(dirname(out), { recursive: true });
  const bundlePath = join(dirname(out), `${basename(out, '.wasm')}.bundle.js`);
  await bundle(rolldown, entry, bundlePath, world);

  let debug;
  if (values.bindings) {
    await mkdir(values.bindings, { recursive: true });
    debug = { bindings: true, bindingsDir: resolve(values.bindings) };
  }
  const { component } = await componentize({
    sourcePath: bundlePath,
    witPath: wit,
    worldName: world,
    disableFeatures: ['http', 'fetch-event'],
    ...(debug ? { debugBindings: true, debug } : {}),
  }).catch((e) => fail(`componentize-js failed: ${e.message}`));
  await writeFile(out, component);
  const size = (component.length / (1 << 20)).toFixed(1);
  console.log(`built ${out} (${size} MiB, world ${world}, entry ${positionals[0]})`);
}

/** Bundle `entry` with the SDK into one ES module for `world`. */
async function bundle(rolldown, entry, outFile, world) {
  const stub = '\0cairn-guest:no-functions';
  const build = await rolldown.rolldown({
    input: entry,
    platform: 'neutral',
    logLevel: 'warn',
    plugins: [
      {
        name: 'cairn-guest',
        resolveId(source) {
          if (source === 'cairn-guest') return join(sdk, 'src', 'index.js');
          if (world === 'function' && source.startsWith('cairn:plugin/functions@')) return stub;
          if (source.startsWith('cairn:plugin/') || source.startsWith('wasi:')) {
            return { id: source, external: true };
          }
          return null;
        },
        load(id) {
          return id === stub ? 'export const call = undefined;\n' : null;
        },
      },
    ],
  });
  try {
    await build.write({ file: outFile, format: 'esm', sourcemap: false });
  } finally {
    await build.close();
  }
}

async function importTool(tools, path) {
  const file = join(tools, 'node_modules', path);
  if (!(await exists(file))) {
    fail(`${file} is missing: run guest-sdk/install-tools.sh (or set CAIRN_JS_TOOLS)`);
  }
  return import(pathToFileURL(file).href);
}

async function exists(path) {
  return stat(path).then(
    () => true,
    () => false,
  );
}

function fail(message) {
  console.error(`build.mjs: ${message}`);
  process.exit(2);
}

await main();
