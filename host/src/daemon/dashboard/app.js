// Cairn's dashboard: plain JavaScript over the daemon's JSON API.
//
// Every piece of text is put on the page with textContent (el() below):
// log lines, errors and notes come from modules and are never parsed as
// HTML. The API token, when the daemon has one, is kept in this tab's
// sessionStorage and sent only in the Authorization header.
'use strict';

const TOKEN_KEY = 'cairn-api-token';
const SVG_NS = 'http://www.w3.org/2000/svg';
const JOBS_REFRESH_MS = 5000;

// ---------------------------------------------------------------- helpers

function byId(id) {
  return document.getElementById(id);
}

/** An element with attributes and children (strings become text nodes). */
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
  append(node, children);
  return node;
}

function pad(n) {
  return String(n).padStart(2, '0');
}

/** Local time to the second, from milliseconds or an RFC 3339 string. */
function fmtTime(value) {
  if (value === null || value === undefined) return '—';
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) return String(value);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function fmtSize(bytes) {
  if (bytes === null || bytes === undefined) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let n = bytes;
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return i === 0 ? `${n} B` : `${n.toFixed(n < 10 ? 2 : 1)} ${units[i]}`;
}

function fmtDuration(ms) {
  if (ms === null || ms === undefined) return '—';
  const s = Math.round(ms / 1000);
  if (s < 60) return `${(ms / 1000).toFixed(1)} s`;
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h > 0 ? `${h} h ${m} min` : `${m} min ${s % 60} s`;
}

function runDuration(run) {
  return run.finished_at_ms ? run.finished_at_ms - run.started_at_ms : null;
}

function statusBadge(status, id) {
  return el('span', { class: `status status-${status}`, id }, status);
}

function jobLink(name) {
  return el('a', { href: `#/jobs/${encodeURIComponent(name)}` }, name);
}

function runLink(id, text) {
  return el('a', { href: `#/runs/${encodeURIComponent(id)}` }, text);
}

// ---------------------------------------------------------------- the API

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function authHeaders() {
  const headers = { Accept: 'application/json' };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  return headers;
}

async function api(path, method) {
  let response;
  try {
    response = await fetch(path, {
      method: method || 'GET',
      headers: authHeaders(),
      cache: 'no-store',
      credentials: 'omit',
    });
  } catch (e) {
    throw new ApiError(0, `the daemon did not answer (${e.message}); is \`cairn daemon\` running?`);
  }
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    body = null;
  }
  if (!response.ok) {
    const message = body && typeof body.error === 'string' ? body.error : response.statusText;
    throw new ApiError(response.status, message);
  }
  return body;
}

/** An API error in words. */
function describeError(e) {
  if (!(e instanceof ApiError)) return `Something went wrong in the page: ${e.message}`;
  switch (e.status) {
    case 0: return `No answer: ${e.message}.`;
    case 401: return `The daemon refused the request (401 Unauthorized): ${e.message}. Enter the API token below.`;
    case 403: return `The daemon refused the request (403 Forbidden): ${e.message}.`;
    case 404: return `Not found (404): ${e.message}.`;
    case 409: return `Not started (409 Conflict): ${e.message}.`;
    case 421: return `The daemon refused this address (421): ${e.message}.`;
    default: return `The daemon answered ${e.status}: ${e.message}.`;
  }
}

function showError(e) {
  const box = byId('error');
  box.replaceChildren(describeError(e));
  box.hidden = false;
  if (e instanceof ApiError && e.status === 401) showTokenForm();
}

function clearError() {
  byId('error').hidden = true;
  byId('error').replaceChildren();
}

function notice(text) {
  byId('notice').textContent = text;
}

function showTokenForm() {
  const form = byId('token-form');
  form.hidden = false;
  byId('token').focus();
}

// ---------------------------------------------------------------- pages

let timers = [];
let follow = null;

function stopBackground() {
  for (const t of timers) clearTimeout(t);
  timers = [];
  if (follow) {
    follow.abort();
    follow = null;
  }
}

function setMain(title, ...children) {
  document.title = `${title} · Cairn`;
  byId('main').replaceChildren(el('h1', {}, title), ...children);
}

async function route() {
  stopBackground();
  const hash = location.hash || '#/';
  let m;
  try {
    if ((m = hash.match(/^#\/jobs\/([^/]+)$/))) await showJob(decodeURIComponent(m[1]));
    else if ((m = hash.match(/^#\/runs\/([^/]+)$/))) await showRun(decodeURIComponent(m[1]));
    else await showJobs();
    clearError();
  } catch (e) {
    showError(e);
  }
}

async function act(button, path, after) {
  button.disabled = true;
  try {
    const body = await api(path, 'POST');
    clearError();
    await after(body);
  } catch (e) {
    showError(e);
  } finally {
    button.disabled = false;
  }
}

function jobActions(job, onChange) {
  const run = el('button', {
    type: 'button', class: 'primary', 'data-action': 'run', 'data-job': job.name,
  }, 'Run now');
  run.addEventListener('click', () => act(run, `/api/jobs/${encodeURIComponent(job.name)}/backup`, (body) => {
    notice(`Started a backup of ${job.name}`);
    location.hash = `#/runs/${encodeURIComponent(body.run.id)}`;
  }));
  const verb = job.paused ? 'resume' : 'pause';
  const toggle = el('button', {
    type: 'button', 'data-action': verb, 'data-job': job.name,
  }, job.paused ? 'Resume' : 'Pause');
  toggle.addEventListener('click', () => act(toggle, `/api/jobs/${encodeURIComponent(job.name)}/${verb}`, async (body) => {
    notice(`${body.paused ? 'Paused' : 'Resumed'} ${job.name}`);
    await onChange();
  }));
  return el('div', { class: 'actions' }, run, toggle);
}

function stateOf(job) {
  const state = job.paused ? 'paused' : 'active';
  return el('span', { class: `status state-${state}`, 'data-state': state }, state);
}

async function showJobs() {
  const { jobs } = await api('/api/jobs');
  const rows = jobs.map((job) => el('tr', { 'data-job': job.name },
    el('td', {}, jobLink(job.name)),
    el('td', {}, job.task),
    el('td', {}, job.schedule ? `${job.schedule}${job.timezone ? ` (${job.timezone})` : ''}` : el('span', { class: 'muted' }, 'none')),
    el('td', {}, job.schedule ? fmtTime(job.next_fire) : '—'),
    el('td', {}, stateOf(job)),
    el('td', {}, job.last_run
      ? [statusBadge(job.last_run.status), ' ', runLink(job.last_run.id, fmtTime(job.last_run.started_at_ms))]
      : el('span', { class: 'muted' }, 'never run')),
    el('td', {}, jobActions(job, route))));
  setMain('Jobs', jobs.length === 0
    ? el('p', {}, 'No jobs are configured.')
    : el('table', { id: 'jobs' },
      el('thead', {}, el('tr', {},
        ['Job', 'Task', 'Schedule', 'Next fire', 'State', 'Last run', 'Actions'].map((h) => el('th', { scope: 'col' }, h)))),
      el('tbody', {}, rows)));
  timers.push(setTimeout(() => refreshJobs(), JOBS_REFRESH_MS));
}

/** Refresh the jobs page quietly (keeps focus; stops on navigation). */
async function refreshJobs() {
  if (document.activeElement && document.activeElement.tagName === 'BUTTON') {
    timers.push(setTimeout(() => refreshJobs(), JOBS_REFRESH_MS));
    return;
  }
  try {
    await showJobs();
  } catch (e) {
    showError(e);
  }
}

function historyChart(title, runs, value, format) {
  const width = 520;
  const height = 110;
  const values = runs.map(value);
  const max = Math.max(1, ...values.map((v) => v || 0));
  // One bar per run, oldest on the left; a few runs keep narrow bars.
  const step = Math.min(24, width / Math.max(runs.length, 1));
  const bar = Math.max(2, step - 3);
  const chart = svg('svg', {
    class: 'chart', width, height: height + 16, viewBox: `0 0 ${width} ${height + 16}`,
    role: 'img', 'aria-label': `${title} of the last ${runs.length} runs, at most ${format(max)}`,
  });
  runs.forEach((run, i) => {
    const v = values[i] || 0;
    const h = Math.max(1, Math.round((v / max) * (height - 4)));
    const cls = run.status === 'succeeded' ? 'bar-succeeded'
      : (run.status === 'failed' || run.status === 'interrupted') ? 'bar-failed' : 'bar-other';
    chart.append(svg('rect', { x: Math.round(i * step) + 1, y: height - h, width: bar, height: h, class: cls },
      svg('title', {}, `${fmtTime(run.started_at_ms)}: ${format(v)} (${run.status})`)));
  });
  chart.append(svg('text', { x: 4, y: height + 13 }, `max ${format(max)}`));
  return el('figure', {}, el('figcaption', {}, title), chart);
}

async function showJob(name) {
  const path = encodeURIComponent(name);
  const [job, runsBody] = await Promise.all([
    api(`/api/jobs/${path}`),
    api(`/api/runs?job=${path}&limit=50`),
  ]);
  const runs = runsBody.runs;
  const finished = runs.filter((r) => r.finished_at_ms).slice().reverse();
  const facts = el('dl', { class: 'facts' },
    el('dt', {}, 'Task'), el('dd', {}, job.task),
    el('dt', {}, 'Schedule'), el('dd', {}, job.schedule ? `${job.schedule}${job.timezone ? ` (${job.timezone})` : ''}` : 'none (runs only when started)'),
    el('dt', {}, 'Next fire'), el('dd', {}, job.schedule ? fmtTime(job.next_fire) : '—'),
    el('dt', {}, 'State'), el('dd', {}, stateOf(job)));
  const charts = finished.length === 0
    ? el('p', { class: 'muted' }, 'No finished runs yet.')
    : el('div', { class: 'charts' },
      historyChart('Duration', finished, runDuration, fmtDuration),
      historyChart('Bytes', finished, (r) => r.bytes, fmtSize));
  const runRows = runs.map((r) => el('tr', {},
    el('td', {}, runLink(r.id, fmtTime(r.started_at_ms))),
    el('td', {}, r.kind),
    el('td', {}, statusBadge(r.status)),
    el('td', { class: 'num' }, fmtDuration(runDuration(r))),
    el('td', { class: 'num' }, fmtSize(r.bytes)),
    el('td', {}, r.trigger),
    el('td', {}, r.error || '')));
  const snapshots = el('div', { id: 'snapshots' }, el('p', { class: 'muted' }, 'Loading snapshots…'));
  setMain(`Job ${name}`, facts, jobActions(job, route),
    el('h2', {}, 'History'), charts,
    el('h2', {}, 'Runs'),
    runs.length === 0 ? el('p', {}, 'No runs yet.') : el('table', { id: 'runs' },
      el('thead', {}, el('tr', {}, ['Started', 'Kind', 'Status', 'Duration', 'Bytes', 'Trigger', 'Error'].map((h) => el('th', { scope: 'col' }, h)))),
      el('tbody', {}, runRows)),
    el('h2', {}, 'Snapshots'), snapshots);
  try {
    const body = await api(`/api/jobs/${path}/snapshots`);
    const list = body.snapshots.slice().reverse();
    snapshots.replaceChildren(list.length === 0 ? el('p', {}, 'No snapshots of this job.') : el('table', {},
      el('thead', {}, el('tr', {}, ['Snapshot', 'Time', 'Size', 'Artifacts', 'Run'].map((h) => el('th', { scope: 'col' }, h)))),
      el('tbody', {}, list.map((s) => el('tr', {},
        el('td', {}, el('code', {}, s.short_id)),
        el('td', {}, fmtTime(s.time_ms)),
        el('td', { class: 'num' }, s.summary ? fmtSize(s.summary.total_bytes_processed) : '—'),
        el('td', {}, s.paths.join(', ')),
        el('td', {}, s.run_id ? runLink(s.run_id, s.run_id) : '—'))))));
  } catch (e) {
    snapshots.replaceChildren(el('p', { class: 'muted' }, `Snapshots cannot be listed: ${describeError(e)}`));
  }
}

function logLine(line) {
  const fields = (line.fields || []).map(([k, v]) => `${k}=${v}`).join(' ');
  return el('li', { class: `lvl-${line.level}` },
    el('time', {}, fmtTime(line.at_ms)), ' ',
    el('span', { class: 'level' }, line.level.toUpperCase()), ' ',
    el('span', { class: 'msg' }, line.message),
    fields ? [' ', el('span', { class: 'fields' }, fields)] : null);
}

function runFacts(run) {
  return el('dl', { class: 'facts', id: 'run-facts' },
    el('dt', {}, 'Job'), el('dd', {}, jobLink(run.job)),
    el('dt', {}, 'Kind'), el('dd', {}, run.kind),
    el('dt', {}, 'Status'), el('dd', {}, statusBadge(run.status, 'run-status')),
    el('dt', {}, 'Trigger'), el('dd', {}, `${run.trigger}${run.attempt > 1 ? `, attempt ${run.attempt}` : ''}`),
    el('dt', {}, 'Started'), el('dd', {}, fmtTime(run.started_at_ms)),
    el('dt', {}, 'Finished'), el('dd', {}, run.finished_at_ms ? fmtTime(run.finished_at_ms) : '—'),
    el('dt', {}, 'Duration'), el('dd', {}, fmtDuration(runDuration(run))),
    el('dt', {}, 'Bytes'), el('dd', {}, fmtSize(run.bytes)),
    el('dt', {}, 'Snapshot'), el('dd', {}, run.snapshot_id ? el('code', {}, run.snapshot_id.slice(0, 8)) : '—'),
    run.error ? [el('dt', {}, 'Error'), el('dd', { id: 'run-error' }, run.error)] : null);
}

async function showRun(id) {
  const { run, logs } = await api(`/api/runs/${encodeURIComponent(id)}`);
  const log = el('ol', { class: 'log', id: 'log', 'aria-label': 'Run log' });
  let facts = runFacts(run);
  const following = el('p', { class: 'muted', id: 'following' });
  setMain(`Run ${id}`, facts, el('h2', {}, 'Log'), following, log);
  if (run.status !== 'queued' && run.status !== 'running') {
    append(log, logs.map(logLine));
    return;
  }
  // Follow the running run: its log from the first line, and its status.
  following.textContent = 'Following the run as it goes…';
  const controller = new AbortController();
  follow = controller;
  streamEvents(`/api/runs/${encodeURIComponent(id)}/events`, controller.signal, (event, data) => {
    if (event === 'log') {
      const nearBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
      log.append(logLine(JSON.parse(data)));
      if (nearBottom) log.scrollTop = log.scrollHeight;
    } else if (event === 'run') {
      const next = runFacts(JSON.parse(data));
      facts.replaceWith(next);
      facts = next;
    } else if (event === 'end') {
      following.textContent = `The run has ended: ${data}.`;
    } else if (event === 'error') {
      following.textContent = `Following stopped: ${data}`;
    }
  }).catch((e) => {
    if (controller.signal.aborted) return;
    following.textContent = '';
    showError(e);
  });
}

/** Read a server-sent event stream with fetch (so the token goes in a header). */
async function streamEvents(path, signal, onEvent) {
  let response;
  try {
    response = await fetch(path, { headers: { ...authHeaders(), Accept: 'text/event-stream' }, signal, cache: 'no-store', credentials: 'omit' });
  } catch (e) {
    if (signal.aborted) return;
    throw new ApiError(0, `the daemon did not answer (${e.message})`);
  }
  if (!response.ok) {
    let message = response.statusText;
    try {
      message = (await response.json()).error || message;
    } catch (_) { /* not JSON */ }
    throw new ApiError(response.status, message);
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = 'message';
      const data = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) event = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      }
      if (data.length > 0) onEvent(event, data.join('\n'));
    }
  }
}

// ---------------------------------------------------------------- start

function start() {
  byId('token-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const value = byId('token').value.trim();
    if (!value) return;
    sessionStorage.setItem(TOKEN_KEY, value);
    byId('token').value = '';
    byId('token-form').hidden = true;
    byId('forget-token').hidden = false;
    route();
  });
  byId('forget-token').hidden = !sessionStorage.getItem(TOKEN_KEY);
  byId('forget-token').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    byId('forget-token').hidden = true;
    notice('Token forgotten');
    route();
  });
  window.addEventListener('hashchange', route);
  route();
}

start();
