// `{{name}}`: a Cairn task written in JavaScript.
//
// Build with `./build.sh`; see README.md.

import { Description, Param, Task, exportTask, log, storage } from 'cairn-guest';

class {{class}} extends Task {
  describe() {
    return new Description('{{name}}', '0.1.0')
      .summary('Greets someone and keeps the greeting in the snapshot')
      .param(Param.required('name', 'Who to greet'))
      .param(Param.optional('greeting', 'How to greet', 'hello'));
  }

  async backup(ctx) {
    // Checked: a missing or mistyped param fails the run with `invalid`, naming it.
    const p = ctx.paramsAs({ name: 'string', greeting: { type: 'string', default: 'hello' } });
    const text = `${p.greeting}, ${p.name}`;
    log.info(text, { job: ctx.job });
    storage.create('greeting.txt').write(text).finish();
    storage.setNote('greeted', p.name);
    return { greeting: text };
  }

  async restore(ctx) {
    const text = storage.open('greeting.txt').text();
    log.info(`restored: ${text}`, { snapshot: ctx.snapshot });
    return { greeting: text, greeted: storage.note('greeted') };
  }
}

export const { describe, backup, restore, forget } = exportTask({{class}});
