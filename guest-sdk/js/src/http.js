// Outbound HTTP requests to origins the job grants (`cairn:plugin/http`):
//
//   const health = http.get(`${url}/_cluster/health`).errorForStatus().json();
//
//   http.Request.put(`${url}/_snapshot/backups/nightly`)
//     .header('Authorization', 'ApiKey {{secret:es-key}}')
//     .json({ indices: '*' })
//     .timeout(30_000)
//     .send()
//     .errorForStatus();
//
// Any status is a `Response`; `errorForStatus()` turns a non-2xx one into
// `Failed`. A header value may contain `{{secret:NAME}}`: the host
// substitutes the secret and redacts it from logs. Redirects are followed
// by the host, each hop checked against the job's grants.
//
// Calls are synchronous host calls (`await` works on their results too);
// `start()` returns a `Pending` that is also a thenable, so several requests
// can be in flight and awaited together.

import { send as witSend, start as witStart } from 'cairn:plugin/http@0.1.0';

import { Failed, Invalid } from './errors.js';
import { hostCall, toU64 } from './wit.js';

/** The methods the host sends. */
export const METHODS = Object.freeze(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH']);

/** How many bytes of a body error messages quote. */
const EXCERPT = 500;
const DISPOSE = Symbol.dispose || Symbol.for('dispose');
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** An HTTP request, built fluently and sent with `send()` (or `start()`). */
export class Request {
  /**
   * A `method` request (`'GET'`, `'post'` …) to the absolute `url`.
   * @param {string} method
   * @param {string} url
   */
  constructor(method, url) {
    const upper = String(method).toUpperCase();
    if (!METHODS.includes(upper)) {
      throw new Invalid(`unsupported HTTP method \`${method}\`: expected GET, HEAD, POST, PUT, DELETE or PATCH`);
    }
    /** The method, upper case. */
    this.method = upper;
    /** The URL. */
    this.url = String(url);
    /** @type {[string, string][]} */
    this.headerList = [];
    /** @type {Uint8Array | undefined} */
    this.bodyBytes = undefined;
    /** @type {number | undefined} */
    this.timeoutMs = undefined;
  }

  /** @param {string} url */ static get(url) { return new Request('GET', url); }
  /** @param {string} url */ static head(url) { return new Request('HEAD', url); }
  /** @param {string} url */ static post(url) { return new Request('POST', url); }
  /** @param {string} url */ static put(url) { return new Request('PUT', url); }
  /** @param {string} url */ static delete(url) { return new Request('DELETE', url); }
  /** @param {string} url */ static patch(url) { return new Request('PATCH', url); }

  /** Add a header; the value may contain `{{secret:NAME}}`. @param {string} name @param {string} value */
  header(name, value) {
    this.headerList.push([String(name), String(value)]);
    return this;
  }

  /** Add several headers (an object or `[name, value]` pairs). @param {Record<string, string> | Iterable<[string, string]>} headers */
  headers(headers) {
    const entries = Symbol.iterator in Object(headers) ? headers : Object.entries(headers);
    for (const [name, value] of /** @type {Iterable<[string, string]>} */ (entries)) this.header(name, value);
    return this;
  }

  /** Set the body (text is UTF-8 encoded). @param {Uint8Array | string} body */
  body(body) {
    this.bodyBytes = typeof body === 'string' ? encoder.encode(body) : body;
    return this;
  }

  /**
   * Set `value`, serialized, as the body, and `Content-Type:
   * application/json` unless a content type is already set.
   * @param {unknown} value
   */
  json(value) {
    let text;
    try {
      text = JSON.stringify(value);
    } catch (e) {
      throw new Invalid(`cannot serialize the request body as JSON: ${e.message}`);
    }
    if (!this.headerList.some(([n]) => n.toLowerCase() === 'content-type')) {
      this.header('Content-Type', 'application/json');
    }
    return this.body(text ?? 'null');
  }

  /** Set the overall timeout of this request in milliseconds. @param {number} ms */
  timeout(ms) {
    this.timeoutMs = ms;
    return this;
  }

  toWit() {
    return {
      method: this.method.toLowerCase(),
      url: this.url,
      headers: this.headerList.map(([name, value]) => ({ name, value })),
      body: this.bodyBytes,
      timeoutMs: this.timeoutMs === undefined ? undefined : toU64(this.timeoutMs, 'timeout'),
    };
  }

  /**
   * Send the request and wait for the response; it can be sent again.
   * Throws `Denied` for an origin the job does not grant, `Limit` for a body
   * over the cap or a timeout, `Failed` for connection errors. A non-2xx
   * status is not an error (see `Response.errorForStatus`).
   * @returns {Response}
   */
  send() {
    return Response.fromWit(hostCall(witSend, this.toWit()), this.method, this.url);
  }

  /**
   * Start sending the request and return at once; `wait()` (or `await`)
   * gives what `send()` would have. At most 8 may be in flight (`Limit`).
   * @returns {Pending}
   */
  start() {
    return new Pending(hostCall(witStart, this.toWit()), this.method, this.url);
  }
}

/**
 * A request started with `Request.start`. `close()` before `wait()` cancels
 * it. It is a thenable: `await pending` waits for the response.
 */
export class Pending {
  constructor(inner, method, url) {
    this.inner = inner;
    /** The method of the request. */
    this.method = method;
    /** The URL of the request. */
    this.url = url;
  }

  /** Wait for the response; throws as `Request.send`. @returns {Response} */
  wait() {
    if (!this.inner) throw new Invalid(`${this.method} ${this.url}: the response was already taken`);
    const inner = this.inner;
    this.inner = undefined;
    try {
      return Response.fromWit(hostCall(() => inner.wait()), this.method, this.url);
    } finally {
      inner[DISPOSE]?.();
    }
  }

  /** Cancel the request if it was not waited for. */
  close() {
    if (this.inner) {
      const inner = this.inner;
      this.inner = undefined;
      inner[DISPOSE]?.();
    }
  }

  /** `await pending` waits for the response. */
  then(onFulfilled, onRejected) {
    return new Promise((resolve) => resolve(this.wait())).then(onFulfilled, onRejected);
  }
}

/** An HTTP response. */
export class Response {
  /**
   * @param {number} status
   * @param {[string, string][]} headers
   * @param {Uint8Array} body
   * @param {string} [method]
   * @param {string} [url]
   */
  constructor(status, headers, body, method = 'GET', url = '') {
    /** Status code. */
    this.status = status;
    /** Headers as `[name, value]` pairs, in the order received. */
    this.headers = headers;
    /** Body, at most the job's body cap. */
    this.body = body;
    /** The method of the request this answers. */
    this.method = method;
    /** The URL of the request this answers. */
    this.url = url;
  }

  static fromWit(response, method, url) {
    return new Response(response.status, response.headers.map((h) => [h.name, h.value]), response.body, method, url);
  }

  /** Whether the status is 2xx. */
  get ok() {
    return this.status >= 200 && this.status < 300;
  }

  /** The first value of header `name` (case-insensitive). @param {string} name @returns {string | undefined} */
  header(name) {
    const lower = name.toLowerCase();
    return this.headers.find(([n]) => n.toLowerCase() === lower)?.[1];
  }

  /** The body as text (invalid UTF-8 replaced). @returns {string} */
  text() {
    return decoder.decode(this.body);
  }

  /** The body decoded from JSON; throws `Failed`, naming the request, if it is not JSON. */
  json() {
    try {
      return JSON.parse(this.text());
    } catch (e) {
      throw new Failed(`${this.method} ${this.url}: response body is not the expected JSON: ${e.message}: ${this.bodyExcerpt()}`);
    }
  }

  /** The response itself if its status is 2xx; throws `Failed("GET <url> returned 500: <body>")` otherwise. */
  errorForStatus() {
    if (this.ok) return this;
    throw new Failed(`${this.method} ${this.url} returned ${this.status}: ${this.bodyExcerpt()}`);
  }

  /** The first 500 bytes of the body as text, for error messages. */
  bodyExcerpt() {
    if (this.body.length <= EXCERPT) return this.text();
    return `${new TextDecoder('utf-8', { fatal: false }).decode(this.body.subarray(0, EXCERPT)).replace(/\uFFFD$/, '')}…`;
  }
}

/**
 * Send one request and return its response:
 * `http.request('POST', url, { json: {}, timeout: 30_000 })`.
 * @param {string} method
 * @param {string} url
 * @param {{ headers?: Record<string, string>, body?: Uint8Array | string, json?: unknown, timeout?: number }} [options]
 */
export function request(method, url, options = {}) {
  const r = new Request(method, url);
  if (options.headers) r.headers(options.headers);
  if (options.json !== undefined) r.json(options.json);
  else if (options.body !== undefined) r.body(options.body);
  if (options.timeout !== undefined) r.timeout(options.timeout);
  return r.send();
}

/** A GET request, sent. @param {string} url @param {Parameters<typeof request>[2]} [options] */
export const get = (url, options) => request('GET', url, options);
/** A POST request, sent. @param {string} url @param {Parameters<typeof request>[2]} [options] */
export const post = (url, options) => request('POST', url, options);
/** A PUT request, sent. @param {string} url @param {Parameters<typeof request>[2]} [options] */
export const put = (url, options) => request('PUT', url, options);
/** A DELETE request, sent. @param {string} url @param {Parameters<typeof request>[2]} [options] */
const del = (url, options) => request('DELETE', url, options);
export { del as delete };
