// `js-json-field`: a Cairn Function written in JavaScript.
//
// Params: `url` (a JSON document), `field` (a dotted path into it, e.g.
// `version.major` or `items.0.name`) and optional `headers` (values may
// contain `{{secret:NAME}}`). Result: `{"status": 200, "field": "...",
// "value": ...}`. A field the document does not have is a `not-found` error.

import { Description, Function, NotFound, Param, exportFunction, fromParams, http } from 'cairn-guest';

/** The value at dotted `path` in `document` (list items by index). */
export function lookup(document, path) {
  let value = document;
  for (const part of path.split('.')) {
    if (value !== null && typeof value === 'object' && Object.hasOwn(value, part)) {
      value = value[part];
    } else {
      throw new NotFound(`the document has no field \`${path}\` (no \`${part}\`)`);
    }
  }
  return value;
}

class JsonField extends Function {
  describe() {
    return new Description('js-json-field', '0.1.0')
      .summary('GETs a JSON document and returns one field of it (JavaScript)')
      .param(Param.required('url', 'URL of the JSON document'))
      .param(Param.required('field', 'Dotted path of the field, e.g. version.major'))
      .param(Param.optional('headers', 'Request headers; values may contain {{secret:NAME}}', {}))
      .needsHttp('{url}');
  }

  call(params) {
    const p = fromParams(params, { url: 'string', field: 'string', headers: { type: 'object<string>', default: {} } });
    const response = http.get(p.url, { headers: p.headers }).errorForStatus();
    let value;
    try {
      value = lookup(response.json(), p.field);
    } catch (e) {
      throw e instanceof NotFound ? e.context(`GET ${p.url}`) : e;
    }
    return { status: response.status, field: p.field, value };
  }
}

export const { describe, call } = exportFunction(JsonField);
