/** A stand-in for `walCheckpointer.worker.mjs` that never answers (and never ends by itself). */
setInterval(() => {}, 1_000)
