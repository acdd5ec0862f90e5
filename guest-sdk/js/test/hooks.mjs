// Module resolution hook: `cairn:plugin/NAME@VERSION` → ./fakes/NAME.js.
export async function resolve(specifier, context, next) {
  const match = /^cairn:plugin\/([a-z-]+)@/.exec(specifier);
  if (match) {
    return { url: new URL(`./fakes/${match[1]}.js`, import.meta.url).href, shortCircuit: true };
  }
  return next(specifier, context);
}
