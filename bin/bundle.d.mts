/** Types of `bundle.mjs` (plain JavaScript, so that the launcher runs without tsx), for the tests. */
export declare const root: string
export declare const bundlePath: (at?: string) => string
export declare const isFresh: (at?: string) => boolean
export declare const bundle: (from?: string, to?: string) => Promise<void>
