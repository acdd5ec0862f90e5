/** The methods the host sends. */
export declare const METHODS: readonly ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH'];
export type Method = (typeof METHODS)[number];

/** Options of `request`, `get`, `post`, `put` and `delete`. */
export interface RequestOptions {
  /** Header values may contain `{{secret:NAME}}`. */
  headers?: Record<string, string>;
  body?: Uint8Array | string;
  /** Sent as JSON, with `Content-Type: application/json`. */
  json?: unknown;
  /** Overall timeout in milliseconds (the host's default otherwise). */
  timeout?: number;
}

/** An HTTP request, built fluently and sent with `send()` (or `start()`). */
export declare class Request {
  /** A `method` request (any case) to the absolute `url`; throws `Invalid` for another method. */
  constructor(method: string, url: string);
  static get(url: string): Request;
  static head(url: string): Request;
  static post(url: string): Request;
  static put(url: string): Request;
  static delete(url: string): Request;
  static patch(url: string): Request;
  /** The method, upper case. */
  readonly method: Method;
  readonly url: string;
  /** Add a header; the value may contain `{{secret:NAME}}`. */
  header(name: string, value: string): this;
  /** Add several headers. */
  headers(headers: Record<string, string> | Iterable<[string, string]>): this;
  /** Set the body (text is UTF-8 encoded). */
  body(body: Uint8Array | string): this;
  /** Set `value` as a JSON body (and `Content-Type: application/json` unless set). */
  json(value: unknown): this;
  /** Overall timeout of this request in milliseconds. */
  timeout(ms: number): this;
  /**
   * Send and wait. Throws `Denied` for an origin the job does not grant,
   * `Limit` for a body over the cap or a timeout, `Failed` for connection
   * errors. Any status is a `Response`.
   */
  send(): Response;
  /** Start sending and return at once (at most 8 in flight, else `Limit`). */
  start(): Pending;
}

/** A started request: `wait()` or `await` it; `close()` cancels it. */
export declare class Pending implements PromiseLike<Response> {
  readonly method: Method;
  readonly url: string;
  /** Wait for the response; throws as `Request.send`. */
  wait(): Response;
  /** Cancel the request if it was not waited for. */
  close(): void;
  then<A = Response, B = never>(
    onFulfilled?: ((response: Response) => A | PromiseLike<A>) | null,
    onRejected?: ((reason: any) => B | PromiseLike<B>) | null,
  ): Promise<A | B>;
}

/** An HTTP response. */
export declare class Response {
  constructor(status: number, headers: [string, string][], body: Uint8Array, method?: string, url?: string);
  readonly status: number;
  /** Headers as `[name, value]` pairs, in the order received. */
  readonly headers: [string, string][];
  /** Body, at most the job's body cap. */
  readonly body: Uint8Array;
  readonly method: string;
  readonly url: string;
  /** Whether the status is 2xx. */
  readonly ok: boolean;
  /** The first value of header `name` (case-insensitive). */
  header(name: string): string | undefined;
  /** The body as text. */
  text(): string;
  /** The body decoded from JSON; throws `Failed` naming the request if it is not JSON. */
  json(): any;
  /** The response if its status is 2xx; throws `Failed("GET <url> returned 500: <body>")` otherwise. */
  errorForStatus(): this;
  /** The first 500 bytes of the body as text. */
  bodyExcerpt(): string;
}

/** Send one request and return its response. */
export declare function request(method: string, url: string, options?: RequestOptions): Response;
export declare function get(url: string, options?: RequestOptions): Response;
export declare function post(url: string, options?: RequestOptions): Response;
export declare function put(url: string, options?: RequestOptions): Response;
declare function del(url: string, options?: RequestOptions): Response;
export { del as delete };
