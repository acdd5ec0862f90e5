/** The value of secret `name`; throws `Denied` unless the job lists it in `allow.readable-secrets`. */
export declare function get(name: string): string;
