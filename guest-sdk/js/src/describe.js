// `Description`: what a module says about itself, built fluently.
//
// `cairn validate` checks the needs against the job's grants before anything
// runs. A needs entry is a literal (`pg_dump`, `http://127.0.0.1:9200`) or a
// reference to a param: `{url}` stands for the value of param `url` (each
// string, if it is a list), `{command[0]}` for the first element of list
// param `command`. For HTTP a URL is reduced to its origin.

const NO_DEFAULT = Symbol('no default');

/** One param a module accepts, as declared in its `Description`. */
export class Param {
  /**
   * @param {string} name
   * @param {string} description
   * @param {{ required?: boolean, default?: unknown }} [options]
   */
  constructor(name, description, options = {}) {
    /** The name, as written in the job's `params` table. */
    this.name = name;
    /** What the param does. */
    this.description = description;
    /** Whether the job must set it. */
    this.required = Boolean(options.required);
    /** Whether a default is documented. */
    this.hasDefault = 'default' in options && options.default !== NO_DEFAULT;
    /** The default (any JSON value), or `undefined`. */
    this.default = this.hasDefault ? options.default : undefined;
  }

  /**
   * A param the job must set.
   * @param {string} name
   * @param {string} description
   */
  static required(name, description) {
    return new Param(name, description, { required: true });
  }

  /**
   * A param the job may leave out; `defaultValue` (any JSON value) documents
   * the value used then. Leave it out when there is none.
   * @param {string} name
   * @param {string} description
   * @param {unknown} [defaultValue]
   */
  static optional(name, description, defaultValue = NO_DEFAULT) {
    return new Param(name, description, { default: defaultValue });
  }

  /** The WIT `param` record (`default` as JSON text). */
  toWit() {
    return {
      name: this.name,
      description: this.description,
      required: this.required,
      default: this.hasDefault ? JSON.stringify(this.default) : undefined,
    };
  }
}

/** What a module is, the params it takes and the capabilities it needs. */
export class Description {
  /**
   * A module called `name` (its short machine name, e.g. `http-request`) at
   * semver `version`.
   * @param {string} name
   * @param {string} version
   */
  constructor(name, version) {
    this.name = name;
    this.version = version;
    this.summaryText = '';
    /** @type {Param[]} */
    this.params = [];
    /** @type {{ http: string[], commands: string[], paths: string[], secrets: string[], functions: string[] }} */
    this.needs = { http: [], commands: [], paths: [], secrets: [], functions: [] };
  }

  /** The one-line summary shown by `cairn plugin list`. @param {string} summary */
  summary(summary) {
    this.summaryText = summary;
    return this;
  }

  /** Declare a param. @param {Param} param */
  param(param) {
    this.params.push(param);
    return this;
  }

  /** Declare an HTTP origin or URL the module requests (literal or `{param}`). @param {string} entry */
  needsHttp(entry) {
    this.needs.http.push(entry);
    return this;
  }

  /** Declare a program the module runs (literal or `{param}`). @param {string} entry */
  needsCommand(entry) {
    this.needs.commands.push(entry);
    return this;
  }

  /** Declare a file-system path the module reads or writes (literal or `{param}`). @param {string} entry */
  needsPath(entry) {
    this.needs.paths.push(entry);
    return this;
  }

  /** Declare a secret the module injects or reads (literal or `{param}`). @param {string} entry */
  needsSecret(entry) {
    this.needs.secrets.push(entry);
    return this;
  }

  /** Declare a function a task calls (literal or `{param}`). @param {string} entry */
  needsFunction(entry) {
    this.needs.functions.push(entry);
    return this;
  }

  /** The WIT `description` record. */
  toWit() {
    return {
      name: this.name,
      version: this.version,
      summary: this.summaryText,
      params: this.params.map((p) => p.toWit()),
      needs: {
        http: [...this.needs.http],
        commands: [...this.needs.commands],
        paths: [...this.needs.paths],
        secrets: [...this.needs.secrets],
        functions: [...this.needs.functions],
      },
    };
  }
}
