// `js-http-snapshot`: a Cairn Task written in JavaScript.
//
// Backup fetches a JSON document from an HTTP API and stores it as the stream
// artifact `api.json` (written through a storage writer), streams a granted
// file into the artifact `file` with `cat` (host-side: the bytes never pass
// through the module), optionally asks a Function for one field of the
// document, records notes, and counts its runs in the job's state.
//
// Restore reads `api.json` back, feeds the artifact `file` into the granted
// `restore-command`, and returns what it restored.

import {
  Description,
  Invalid,
  Param,
  Task,
  exportTask,
  functions,
  http,
  log,
  progress,
  shell,
  state,
  storage,
  time,
} from 'cairn-guest';

/** The job's params, checked: a missing or mistyped one fails the run with `invalid`, naming it. */
const PARAMS = {
  url: 'string',
  file: 'string',
  'restore-command': { type: 'string[]', default: ['cat'] },
  function: { type: 'string', optional: true },
  field: { type: 'string', default: 'version' },
};

class HttpSnapshot extends Task {
  describe() {
    return new Description('js-http-snapshot', '0.1.0')
      .summary('Stores a JSON document from an HTTP API and a file; restores both (JavaScript)')
      .param(Param.required('url', 'URL of the JSON document, e.g. http://127.0.0.1:8080/status'))
      .param(Param.required('file', 'File whose bytes are stored, read by `cat`'))
      .param(Param.optional('restore-command', 'Program and arguments that receive the stored file on stdin at restore', ['cat']))
      .param(Param.optional('function', 'A Function called with {url, field} whose result is kept as a note'))
      .param(Param.optional('field', 'The field the function extracts', 'version'))
      .needsHttp('{url}')
      .needsCommand('cat')
      .needsCommand('{restore-command[0]}')
      .needsFunction('{function}');
  }

  async backup(ctx) {
    const p = ctx.paramsAs(PARAMS);
    progress.report(0, 3);

    const document = http.get(p.url, { timeout: 30_000 }).errorForStatus().json();
    const out = storage.create('api.json');
    out.write(JSON.stringify(document, null, 2));
    out.finish();
    progress.report(1, 3);

    const copied = storage.createFromCommand('file', new shell.Command('cat', p.file));
    progress.report(2, 3);

    storage.setNote('source-url', p.url);
    storage.setNote('file', p.file);
    storage.setNote('fetched-at', time.now().toISOString());
    let value = null;
    if (p.function) {
      value = functions.call(p.function, { url: p.url, field: p.field });
      storage.setNote('field', JSON.stringify(value));
    }

    const runs = state.getJson('runs', 0) + 1;
    state.setJson('runs', runs);
    progress.report(3, 3);
    log.info('stored the document and the file', { url: p.url, file_bytes: copied.size, runs });
    return {
      artifacts: Object.fromEntries(storage.list().map((a) => [a.name, a.size])),
      field: value,
      runs,
    };
  }

  async restore(ctx) {
    const p = ctx.paramsAs(PARAMS);
    const notes = storage.notes();
    const document = storage.open('api.json').json();
    const [program, ...args] = p.restoreCommand;
    if (!program) throw new Invalid('invalid params: `restore-command` is empty');
    const command = new shell.Command(program, ...args);
    const output = storage.restoreToCommand('file', command).check();
    log.info('restored', { snapshot: ctx.snapshot, program: command.program });
    return {
      snapshot: ctx.snapshot,
      notes,
      document,
      file: { program: command.program, 'exit-code': output.exitCode, stdout: output.stdoutText },
    };
  }
}

export const { describe, backup, restore, forget } = exportTask(HttpSnapshot);
