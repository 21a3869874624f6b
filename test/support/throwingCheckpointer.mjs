/** A stand-in for `walCheckpointer.worker.mjs` that throws as it loads, before it can say anything. */
throw new Error("cannot load the SQLite driver")
