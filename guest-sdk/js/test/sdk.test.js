// Unit tests of the JavaScript SDK under Node, with the host imports faked
// (run: npm test, i.e. node --import ./test/register.mjs --test test/).
import assert from 'node:assert/strict';
import { beforeEach, describe, test } from 'node:test';

import {
  CairnError,
  Context,
  Denied,
  Description,
  Failed,
  Function,
  Invalid,
  Limit,
  NotFound,
  Param,
  Task,
  Unsupported,
  exportFunction,
  exportTask,
  formatSize,
  fromParams,
  http,
  parseDuration,
  shell,
  state,
  storage,
  time,
} from '../src/index.js';
import { componentError, host, reset } from './fakes/host.js';

beforeEach(reset);

const wireContext = { job: 'j', runId: 'r', params: '{"url":"http://x"}', snapshot: 's' };

describe('errors', () => {
  test('host errors become SDK errors with their case', () => {
    const cases = { denied: Denied, invalid: Invalid, 'not-found': NotFound, limit: Limit, unsupported: Unsupported, failed: Failed };
    for (const [tag, Kind] of Object.entries(cases)) {
      host['http.send'] = () => {
        throw componentError(tag, 'why');
      };
      assert.throws(() => http.get('http://127.0.0.1:1/'), (e) => e instanceof Kind && e instanceof CairnError && e.message === 'why' && e.kind === tag);
    }
  });

  test('exports return the WIT case of what they throw', async () => {
    class Refuses extends Task {
      describe() {
        return new Description('refuses', '0.1.0');
      }
      backup() {
        throw new Invalid('bad url');
      }
      async restore() {
        return http.get('http://x/').json();
      }
    }
    const world = exportTask(Refuses);
    assert.deepEqual(await world.backup(wireContext), { tag: 'err', val: { tag: 'invalid', val: 'bad url' } });
    host['http.send'] = () => {
      throw componentError('denied', 'http to http://x is not granted');
    };
    assert.deepEqual(await world.restore(wireContext), { tag: 'err', val: { tag: 'denied', val: 'http to http://x is not granted' } });
    assert.deepEqual(await world.forget(wireContext), { tag: 'ok', val: 'null' });
  });

  test('plain errors are failed with their cause chain, and logged with their stack', async () => {
    class Buggy extends Function {
      describe() {
        return new Description('buggy', '0.1.0');
      }
      call(params) {
        throw new TypeError('lookup failed', { cause: new Error(`no ${params.key}`) });
      }
    }
    const world = exportFunction(Buggy);
    assert.deepEqual(await world.call('{"key":"k"}'), { tag: 'err', val: { tag: 'failed', val: 'lookup failed: no k' } });
    assert.equal(host.log[0].level, 'debug');
    assert.match(host.log[0].message, /TypeError: lookup failed/);
    const invalid = await world.call('{nope');
    assert.equal(invalid.val.tag, 'invalid');
    assert.match(invalid.val.val, /^params are not valid JSON/);
  });

  test('results are JSON text; undefined is null; non-JSON is failed', async () => {
    class Echo extends Function {
      describe() {
        return new Description('echo', '0.1.0');
      }
      async call(params) {
        return params.big ? 10n : params.none ? undefined : params;
      }
    }
    const world = exportFunction(Echo);
    assert.deepEqual(await world.call('{"a":[1,2]}'), { tag: 'ok', val: '{"a":[1,2]}' });
    assert.deepEqual(await world.call('{"none":true}'), { tag: 'ok', val: 'null' });
    const bad = await world.call('{"big":true}');
    assert.equal(bad.val.tag, 'failed');
    assert.match(bad.val.val, /not JSON/);
  });

  test('context keeps the case', () => {
    const e = new NotFound('no artifact `x`').context('cannot restore');
    assert.ok(e instanceof NotFound);
    assert.equal(e.message, 'cannot restore: no artifact `x`');
  });

  test('exportTask refuses what is not a Task', () => {
    assert.throws(() => exportTask(class {}), TypeError);
  });
});

describe('describe', () => {
  test('description converts to WIT', async () => {
    class T extends Task {
      describe() {
        return new Description('x', '0.1.0')
          .summary('s')
          .param(Param.required('url', 'u'))
          .param(Param.optional('batch', 'b', 100))
          .param(Param.optional('ping-url', 'p'))
          .needsHttp('{url}')
          .needsCommand('pg_dump')
          .needsPath('{path}')
          .needsSecret('token')
          .needsFunction('http-request');
      }
    }
    const d = await exportTask(T).describe();
    assert.equal(d.summary, 's');
    assert.deepEqual(d.params.map((p) => [p.required, p.default]), [[true, undefined], [false, '100'], [false, undefined]]);
    assert.deepEqual(d.needs, { http: ['{url}'], commands: ['pg_dump'], paths: ['{path}'], secrets: ['token'], functions: ['http-request'] });
  });
});

describe('params', () => {
  const spec = {
    url: 'string',
    'restore-command': { type: 'string[]', default: ['cat'] },
    batch: { type: 'integer', default: 100 },
    ratio: { type: 'number', optional: true },
  };

  test('are checked and camel-cased', () => {
    const ctx = new Context('j', 'r', { url: 'http://x', 'restore-command': ['tee', '/t'] });
    assert.deepEqual(ctx.paramsAs(spec), { url: 'http://x', restoreCommand: ['tee', '/t'], batch: 100, ratio: undefined });
  });

  test('errors name the field', () => {
    const error = (params) => {
      try {
        fromParams(params, spec);
      } catch (e) {
        assert.ok(e instanceof Invalid);
        return e.message;
      }
      assert.fail('no error');
    };
    assert.equal(error({}), 'invalid params: missing field `url`');
    assert.equal(error({ url: 3 }), 'invalid params: `url` must be a string, got number 3');
    assert.equal(error({ url: 'u', batch: 1.5 }), 'invalid params: `batch` must be an integer, got number 1.5');
    assert.equal(error({ url: 'u', 'restore-command': ['a', 1] }), 'invalid params: `restore-command` must be a list of strings, got a list');
    assert.match(error({ url: 'u', urll: 1 }), /^invalid params: unknown field `urll`/);
    assert.equal(fromParams({ url: 'u', x: 1 }, spec, { allowUnknown: true }).url, 'u');
  });

  test('context params must be an object', () => {
    assert.throws(() => new Context('j', 'r', '[1]').params, Invalid);
  });
});

describe('capabilities', () => {
  test('http request and response', async () => {
    const sent = [];
    host['http.send'] = (request) => {
      sent.push(request);
      return { status: 500, headers: [{ name: 'Content-Type', value: 'text/plain' }], body: new TextEncoder().encode('boom') };
    };
    const response = http.Request.post('http://127.0.0.1:1/x').header('X-A', '1').json({ a: 1 }).timeout(2500).send();
    assert.equal(sent[0].method, 'post');
    assert.equal(new TextDecoder().decode(sent[0].body), '{"a":1}');
    assert.equal(sent[0].timeoutMs, 2500n);
    assert.deepEqual(sent[0].headers.map((h) => h.name), ['X-A', 'Content-Type']);
    assert.equal(response.header('content-type'), 'text/plain');
    assert.throws(() => response.errorForStatus(), { message: 'POST http://127.0.0.1:1/x returned 500: boom' });
    assert.throws(() => new http.Request('FETCH', 'http://x'), Invalid);

    // A started request is a thenable.
    let waited = 0;
    host['http.start'] = () => ({ wait: () => (waited++, { status: 204, headers: [], body: new Uint8Array() }) });
    const pending = http.Request.get('http://x/').start();
    assert.equal((await pending).status, 204);
    assert.equal(waited, 1);
    assert.throws(() => pending.wait(), Invalid);
  });

  test('shell output check', () => {
    const calls = [];
    host['shell.run'] = (command, stdin) => {
      calls.push([command, stdin]);
      return { exitCode: 2, stdout: new TextEncoder().encode('out\n'), stderr: new TextEncoder().encode('warming up\nno such database\n\n'), stdoutTruncated: false, stderrTruncated: false };
    };
    const output = new shell.Command('pg_dump', '-Fc').args(['-d', 'app']).env('PGPASSWORD', '{{secret:pg}}').timeout(2000).run();
    const [command, stdin] = calls[0];
    assert.deepEqual(command, { program: 'pg_dump', args: ['-Fc', '-d', 'app'], env: [['PGPASSWORD', '{{secret:pg}}']], cwd: undefined, timeoutMs: 2000n });
    assert.equal(stdin, undefined);
    assert.throws(() => output.check(), { message: 'command `pg_dump` exited with code 2: no such database' });
  });

  test('storage writer buffers; reader reads to the end', async () => {
    const written = [];
    host['storage.create'] = () => ({
      write: (bytes) => written.push(bytes),
      finish: () => ({ name: 'a.json', kind: 'stream', size: BigInt(written.reduce((n, b) => n + b.length, 0)) }),
    });
    const out = storage.create('a.json');
    out.write('{"k":').write(new TextEncoder().encode('"v"}'));
    assert.equal(written.length, 0);
    assert.deepEqual(out.finish(), { name: 'a.json', kind: 'stream', size: 9 });
    assert.equal(new TextDecoder().decode(written[0]), '{"k":"v"}');

    const chunks = ['{"a": ', '[1, 2]}', ''].map((s) => new TextEncoder().encode(s));
    host['storage.open'] = () => ({ read: () => chunks.shift() });
    assert.deepEqual(storage.open('a.json').json(), { a: [1, 2] });

    const parts = ['x', 'y', ''].map((s) => new TextEncoder().encode(s));
    host['storage.open'] = () => ({ read: () => parts.shift() });
    const seen = [];
    for await (const chunk of storage.open('b')) seen.push(new TextDecoder().decode(chunk));
    assert.deepEqual(seen, ['x', 'y']);
  });

  test('state json', () => {
    const store = new Map();
    host['state.get'] = (k) => store.get(k);
    host['state.set'] = (k, v) => store.set(k, v);
    assert.equal(state.getJson('runs', 0), 0);
    state.setJson('runs', 3);
    assert.equal(state.getJson('runs'), 3);
    store.set('bad', '{');
    assert.throws(() => state.getJson('bad'), Failed);
  });

  test('time converts u64 and sleep returns a promise', async () => {
    host['time.now'] = () => 1_700_000_000_123n;
    const slept = [];
    host['time.sleep'] = (ms) => slept.push(ms);
    assert.equal(time.nowMs(), 1_700_000_000_123);
    assert.equal(time.now().toISOString(), '2023-11-14T22:13:20.123Z');
    await time.sleep(1.2);
    assert.deepEqual(slept, [2n]);
  });
});

describe('helpers', () => {
  test('formatSize', () => {
    assert.equal(formatSize(512), '512 B');
    assert.equal(formatSize(1536), '1.5 KiB');
    assert.equal(formatSize(3 * 2 ** 20), '3.0 MiB');
  });

  test('parseDuration', () => {
    assert.equal(parseDuration('1m30s'), 90_000);
    assert.equal(parseDuration('250ms'), 250);
    assert.equal(parseDuration('90'), 90_000);
    assert.equal(parseDuration('2H'), 7_200_000);
    assert.equal(parseDuration('1m 30s'), 90_000);
    for (const [bad, why] of [['5 minutes', /unknown unit `minutes`/], ['30s5m', /largest first/], ['', /empty/]]) {
      assert.throws(() => parseDuration(bad), (e) => e instanceof Invalid && why.test(e.message));
    }
  });
});
