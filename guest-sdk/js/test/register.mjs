// Loaded with `node --import ./test/register.mjs`: resolves the
// `cairn:plugin/NAME@0.1.0` imports of the SDK to the fakes in ./fakes/, so
// that the SDK runs under Node without a host.
import { register } from 'node:module';

register('./hooks.mjs', import.meta.url);
