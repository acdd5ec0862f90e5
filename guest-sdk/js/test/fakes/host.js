// What the fake imports do: tests replace these functions. A host error is
// thrown the way componentize-js throws it: an error whose `payload` is the
// WIT `error` value.
export const host = {};

export function reset() {
  for (const key of Object.keys(host)) delete host[key];
  host.log = [];
}
reset();

/** The error a generated import throws for WIT error `tag`. */
export function componentError(tag, val) {
  const e = new Error(`${tag} (see error.payload)`);
  Object.defineProperty(e, 'payload', { value: { tag, val }, enumerable: true });
  return e;
}

export function fake(name, ...args) {
  const fn = host[name];
  if (!fn) throw new Error(`test did not fake ${name}`);
  return fn(...args);
}
