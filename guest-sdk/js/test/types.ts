// Type-checked (not run) by `tsc -p test/tsconfig.json`: the declarations in
// src/*.d.ts describe the SDK as a TypeScript author uses it.
import {
  type Context,
  Denied,
  Description,
  Function,
  Param,
  Task,
  exportFunction,
  exportTask,
  functions,
  http,
  log,
  progress,
  shell,
  state,
  storage,
  time,
} from '../src/index.js';

class Typed extends Task {
  describe(): Description {
    return new Description('typed', '0.1.0')
      .summary('Type check')
      .param(Param.required('url', 'URL'))
      .param(Param.optional('batch', 'Batch size', 100))
      .needsHttp('{url}')
      .needsCommand('cat');
  }

  async backup(ctx: Context) {
    const { url, batch } = ctx.paramsAs({ url: 'string', batch: { type: 'integer', default: 100 } });
    const response: http.Response = http.get(url, { timeout: 5_000 }).errorForStatus();
    const pending: http.Pending = http.Request.post(url).json({ batch }).start();
    const answered: http.Response = await pending;
    const writer: storage.Writer = storage.create('doc.json');
    writer.write(response.text()).write(new Uint8Array([10]));
    const artifact: storage.Artifact = writer.finish();
    const copied = storage.createFromCommand('file', new shell.Command('cat', '/etc/hostname').timeout(1_000));
    storage.setNote('status', String(answered.status));
    progress.report(1, 2, 'items');
    log.info('done', { size: artifact.size + copied.size });
    state.setJson('runs', state.getJson<number>('runs', 0) + 1);
    state.delete('old');
    await time.sleep(1);
    try {
      functions.call('other', { url });
    } catch (e) {
      if (e instanceof Denied) log.warn(e.message, { kind: e.kind });
    }
    return { at: time.now().toISOString() };
  }

  restore(ctx: Context) {
    const text: string = storage.open('doc.json').text();
    const output: shell.Output = storage.restoreToCommand('file', new shell.Command('cat')).check();
    storage.restoreTree('tree', '/srv/x', { overwrite: true });
    return { snapshot: ctx.snapshot, text, stdout: output.stdoutText, notes: storage.notes() };
  }
}

class Fn extends Function {
  describe() {
    return new Description('fn', '0.1.0');
  }
  call(params: { a: number }) {
    return { double: params.a * 2 };
  }
}

export const { describe, backup, restore, forget } = exportTask(Typed);
export const fn = exportFunction(Fn);
