/**
 * A JSON-RPC fault proxy for tests and benchmarks: a loopback HTTP server in front of an upstream
 * JSON-RPC URL (usually anvil) that answers each call as its programmable policy says: pass it
 * through, or fail it the ways real providers do (range caps with their real error texts, 429
 * with or without `Retry-After`, 5xx, slow answers, dropped or reset connections, broken JSON, a
 * head that lags behind). The policy can be changed while the proxy runs, random faults replay
 * from a printed seed, and counters say what the proxy did.
 *
 * A policy is a list of rules; the first rule that returns a `Fault` for a call decides it, and a
 * call no rule claims passes. In a batch (viem may batch), transport faults (status codes,
 * drops, resets, broken bodies) hit the whole HTTP request, as they would at a real provider;
 * JSON-RPC faults (range caps, lag, errors) hit their own element.
 */
import * as http from "node:http"
import { Context, Data, Effect, Layer, type Scope } from "effect"

// ---------------------------------------------------------------------------------------------
// Faults and rules

/** Whose words a range-cap error uses. */
export type Provider = "alchemy" | "infura" | "quicknode" | "generic"

/** What the proxy does with one call. */
export type Fault = Data.TaggedEnum<{
  /** Forward upstream unchanged. */
  Pass: {}
  /**
   * For `eth_getLogs`: refuse a range longer than `maxRange` blocks, or (checked after
   * forwarding) a result of more than `maxLogs` logs, with `provider`'s real error text and its
   * suggested range. Anything else, or a range within the caps, passes.
   */
  RangeCap: { readonly provider: Provider; readonly maxRange?: number; readonly maxLogs?: number }
  /** HTTP 429, with a `Retry-After` header (seconds) when given. */
  RateLimit: { readonly retryAfter?: number }
  /** An HTTP 5xx with a plain text body. */
  ServerError: { readonly status: number }
  /** Wait `millis`, then forward (use it past a client's timeout). */
  Delay: { readonly millis: number }
  /** Destroy the connection before answering anything. */
  Drop: {}
  /** Send the headers and half the body, then reset the connection. */
  Reset: {}
  /** A complete HTTP answer whose JSON body is cut in half. */
  Truncated: {}
  /** A complete HTTP answer whose body is not JSON at all (a proxy's HTML error page). */
  InvalidJson: {}
  /** Answer `eth_blockNumber` and `eth_getBlockByNumber("latest")` as of `blocks` blocks ago. */
  Lag: { readonly blocks: number }
  /** A JSON-RPC error for this call. */
  RpcError: { readonly code: number; readonly message: string }
}>

export const Fault = Data.taggedEnum<Fault>()

export type FaultTag = Fault["_tag"]

/** One JSON-RPC call as a rule sees it. */
export interface RpcCall {
  readonly method: string
  readonly params: ReadonlyArray<unknown>
  /** The call's number since the proxy started (0-based), batch elements counted one by one. */
  readonly n: number
}

/** Decides a call, or leaves it to the next rule (`undefined`). */
export type Rule = (call: RpcCall) => Fault | undefined

/** `fault` for every call (of `methods`, when given). */
export const always = (fault: Fault, methods?: ReadonlyArray<string>): Rule => (call) =>
  methods === undefined || methods.includes(call.method) ? fault : undefined

/** `fault` for the next `count` calls (of `methods`, when given), then nothing. */
export const times = (count: number, fault: Fault, methods?: ReadonlyArray<string>): Rule => {
  let left = count
  return (call) => {
    if (left <= 0 || (methods !== undefined && !methods.includes(call.method))) return undefined
    left--
    return fault
  }
}

/** Caps `eth_getLogs` like `provider` does. */
export const rangeCap = (provider: Provider, caps: { readonly maxRange?: number; readonly maxLogs?: number }): Rule =>
  always(Fault.RangeCap({ provider, ...caps }), ["eth_getLogs"])

/** The head seen through the proxy is `blocks` behind the upstream's. */
export const lag = (blocks: number): Rule => always(Fault.Lag({ blocks }), ["eth_blockNumber", "eth_getBlockByNumber"])

/** A small seeded PRNG (mulberry32): the same seed, the same faults. */
export const prng = (seed: number): () => number => {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** A rule that drew its faults from a seeded PRNG: the seed replays it. */
export type RandomRule = Rule & { readonly seed: number }

/**
 * With probability `rate`, one of `faults` (weighted) for calls of `methods` (all by default).
 * The seed is random unless given; it is on the returned rule and logged by `setRules`, so a
 * failing run can be replayed.
 */
export const random = (options: {
  readonly rate: number
  readonly faults: ReadonlyArray<readonly [weight: number, fault: Fault]>
  readonly seed?: number
  readonly methods?: ReadonlyArray<string>
}): RandomRule => {
  const seed = options.seed ?? Math.floor(Math.random() * 2 ** 31)
  const next = prng(seed)
  const total = options.faults.reduce((sum, [w]) => sum + w, 0)
  const rule: Rule = (call) => {
    if (options.methods !== undefined && !options.methods.includes(call.method)) return undefined
    if (next() >= options.rate) return undefined
    let pick = next() * total
    for (const [weight, fault] of options.faults) {
      pick -= weight
      if (pick < 0) return fault
    }
    return undefined
  }
  return Object.assign(rule, { seed })
}

// ---------------------------------------------------------------------------------------------
// Provider error texts

const hex = (n: bigint) => `0x${n.toString(16)}`

/** The error `provider` gives for a range it refuses; `suggested` is the range it proposes. */
export const rangeCapError = (
  provider: Provider,
  cap: { readonly maxRange: number; readonly maxLogs: number },
  suggested: readonly [bigint, bigint]
): { readonly code: number; readonly message: string; readonly data?: unknown } => {
  const [from, to] = suggested
  switch (provider) {
    case "alchemy": {
      const k = (n: number) => (n % 1000 === 0 ? `${n / 1000}K` : String(n))
      return {
        code: -32600,
        message:
          `Log response size exceeded. You can make eth_getLogs requests with up to a ${k(cap.maxRange)} block range ` +
          `and no limit on the response size, or you can request any block range with a cap of ${k(cap.maxLogs)} logs ` +
          `in the response. Based on your parameters, this block range should work: [${hex(from)}, ${hex(to)}]`
      }
    }
    case "infura":
      return {
        code: -32005,
        message: `query returned more than ${cap.maxLogs} results. Try with this block range [${hex(from)}, ${hex(to)}].`,
        data: { from: hex(from), limit: cap.maxLogs, to: hex(to) }
      }
    case "quicknode":
      return { code: -32614, message: `eth_getLogs is limited to a ${cap.maxRange} range` }
    case "generic":
      return { code: -32005, message: "block range too large" }
  }
}

// ---------------------------------------------------------------------------------------------
// The proxy

/** What the proxy has done since it started (or since `resetStats`). */
export interface Stats {
  /** HTTP requests received. */
  readonly requests: number
  /** JSON-RPC calls received (each batch element counts). */
  readonly calls: number
  /** HTTP requests that held a batch. */
  readonly batches: number
  /** Calls per method. */
  readonly byMethod: Readonly<Record<string, number>>
  /** Faults actually applied, by kind (a `RangeCap` counts only when it refused; `Pass` counts forwarded calls). */
  readonly faults: Readonly<Partial<Record<FaultTag, number>>>
}

/** One line of the proxy's recent history. */
export interface Decision {
  readonly n: number
  readonly method: string
  readonly fault: FaultTag
}

/** The proxy could not listen. */
export class RpcProxyError extends Data.TaggedError("RpcProxyError")<{ readonly cause: unknown }> {
  override get message() {
    return `the RPC fault proxy could not listen on loopback: ${this.cause instanceof Error ? this.cause.message : String(this.cause)}`
  }
}

/** A running fault proxy. */
export interface RpcProxyInstance {
  /** Where clients connect: `http://127.0.0.1:<port>`. */
  readonly url: string
  readonly port: number
  readonly upstream: string
  /** Replaces the policy (first matching rule decides; no rule: pass). Random rules' seeds are logged. */
  readonly setRules: (...rules: ReadonlyArray<Rule>) => Effect.Effect<void>
  /** Counters since the start or the last `resetStats`. */
  readonly stats: Effect.Effect<Stats>
  readonly resetStats: Effect.Effect<void>
  /** The last 1000 decisions, oldest first. */
  readonly history: Effect.Effect<ReadonlyArray<Decision>>
}

export class RpcProxy extends Context.Tag("kwil-listeners/test/RpcProxy")<RpcProxy, RpcProxyInstance>() {
  /** A proxy in front of `upstream`, for the layer's lifetime. */
  static readonly layer = (upstream: string, ...rules: ReadonlyArray<Rule>): Layer.Layer<RpcProxy, RpcProxyError> =>
    Layer.scoped(RpcProxy, make(upstream, ...rules))
}

interface JsonRpcRequest {
  readonly jsonrpc?: string
  readonly id?: unknown
  readonly method?: unknown
  readonly params?: unknown
}

type JsonRpcResponse = { readonly jsonrpc: "2.0"; readonly id: unknown } & (
  | { readonly result: unknown }
  | { readonly error: { readonly code: number; readonly message: string; readonly data?: unknown } }
)

const transportFaults: ReadonlyArray<FaultTag> = ["RateLimit", "ServerError", "Drop", "Reset", "Truncated", "InvalidJson"]

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

const readBody = (req: http.IncomingMessage) =>
  new Promise<string>((resolve, reject) => {
    const chunks: Array<Buffer> = []
    req.on("data", (c: Buffer) => chunks.push(c))
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")))
    req.on("error", reject)
  })

/** Starts a proxy in front of `upstream` on a free loopback port; closing the scope stops it. */
export const make = (upstream: string, ...initialRules: ReadonlyArray<Rule>): Effect.Effect<RpcProxyInstance, RpcProxyError, Scope.Scope> =>
  Effect.gen(function*() {
    let rules: ReadonlyArray<Rule> = initialRules
    let n = 0
    const fresh = () => ({ requests: 0, calls: 0, batches: 0, byMethod: {} as Record<string, number>, faults: {} as Partial<Record<FaultTag, number>> })
    let stats = fresh()
    const history: Array<Decision> = []
    const count = (tag: FaultTag) => (stats.faults[tag] = (stats.faults[tag] ?? 0) + 1)

    let upstreamId = 0
    const forward = async (method: string, params: ReadonlyArray<unknown>): Promise<{ result?: unknown; error?: { code: number; message: string; data?: unknown } }> => {
      const res = await fetch(upstream, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ jsonrpc: "2.0", id: ++upstreamId, method, params }),
        signal: AbortSignal.timeout(60_000)
      })
      return (await res.json()) as { result?: unknown; error?: { code: number; message: string } }
    }
    const forwardResult = async (method: string, params: ReadonlyArray<unknown>) => {
      const body = await forward(method, params)
      if (body.error !== undefined) throw Object.assign(new Error(body.error.message), { rpc: body.error })
      return body.result
    }

    const blockOf = async (tag: unknown): Promise<bigint> => {
      if (typeof tag === "string" && tag.startsWith("0x")) return BigInt(tag)
      if (tag === "earliest") return 0n
      if (tag === undefined || tag === null || tag === "latest" || tag === "pending") {
        return BigInt((await forwardResult("eth_blockNumber", [])) as string)
      }
      const block = (await forwardResult("eth_getBlockByNumber", [tag, false])) as { number: string } | null
      return block === null ? 0n : BigInt(block.number)
    }

    /** Answers one call that no transport fault claimed. */
    const answer = async (id: unknown, method: string, params: ReadonlyArray<unknown>, fault: Fault): Promise<JsonRpcResponse> => {
      const reply = (body: { result?: unknown; error?: { code: number; message: string; data?: unknown } }): JsonRpcResponse =>
        body.error !== undefined ? { jsonrpc: "2.0", id, error: body.error } : { jsonrpc: "2.0", id, result: body.result ?? null }
      switch (fault._tag) {
        case "RpcError":
          count("RpcError")
          return reply({ error: { code: fault.code, message: fault.message } })
        case "Lag": {
          const isLatest = method === "eth_blockNumber" ||
            (method === "eth_getBlockByNumber" && (params[0] === "latest" || params[0] === "pending"))
          if (!isLatest) break
          count("Lag")
          const head = await blockOf("latest")
          const lagged = head > BigInt(fault.blocks) ? head - BigInt(fault.blocks) : 0n
          return method === "eth_blockNumber"
            ? reply({ result: hex(lagged) })
            : reply(await forward("eth_getBlockByNumber", [hex(lagged), params[1] ?? false]))
        }
        case "RangeCap": {
          if (method !== "eth_getLogs") break
          const filter = (params[0] ?? {}) as { fromBlock?: unknown; toBlock?: unknown; blockHash?: unknown }
          if (filter.blockHash !== undefined) break
          const from = await blockOf(filter.fromBlock)
          const to = await blockOf(filter.toBlock)
          const cap = { maxRange: fault.maxRange ?? Number.MAX_SAFE_INTEGER, maxLogs: fault.maxLogs ?? 10_000 }
          if (fault.maxRange !== undefined && to - from + 1n > BigInt(fault.maxRange)) {
            count("RangeCap")
            return reply({ error: rangeCapError(fault.provider, cap, [from, from + BigInt(fault.maxRange) - 1n]) })
          }
          const body = await forward(method, params)
          const logs = body.result
          if (fault.maxLogs !== undefined && Array.isArray(logs) && logs.length > fault.maxLogs) {
            count("RangeCap")
            // Suggest up to the block before the one holding the first log past the cap (at least one block).
            const over = BigInt((logs[fault.maxLogs] as { blockNumber: string }).blockNumber)
            return reply({ error: rangeCapError(fault.provider, cap, [from, over > from ? over - 1n : from]) })
          }
          count("Pass")
          return reply(body)
        }
        default:
          break
      }
      count("Pass")
      return reply(await forward(method, params))
    }

    const handle = async (req: http.IncomingMessage, res: http.ServerResponse) => {
      stats.requests++
      const raw = await readBody(req)
      let parsed: unknown
      try {
        parsed = JSON.parse(raw)
      } catch {
        res.writeHead(400, { "content-type": "application/json" })
        res.end(JSON.stringify({ jsonrpc: "2.0", id: null, error: { code: -32700, message: "Parse error" } }))
        return
      }
      const isBatch = Array.isArray(parsed)
      if (isBatch) stats.batches++
      const requests = (isBatch ? parsed : [parsed]) as ReadonlyArray<JsonRpcRequest>

      const decided = requests.map((r) => {
        const method = typeof r.method === "string" ? r.method : ""
        const params = Array.isArray(r.params) ? (r.params as ReadonlyArray<unknown>) : []
        const call: RpcCall = { method, params, n: n++ }
        stats.calls++
        stats.byMethod[method] = (stats.byMethod[method] ?? 0) + 1
        let fault: Fault = Fault.Pass()
        for (const rule of rules) {
          const f = rule(call)
          if (f !== undefined) {
            fault = f
            break
          }
        }
        history.push({ n: call.n, method, fault: fault._tag })
        if (history.length > 1000) history.shift()
        return { id: r.id, method, params, fault }
      })

      const delay = Math.max(0, ...decided.map((d) => (d.fault._tag === "Delay" ? d.fault.millis : 0)))
      if (delay > 0) {
        count("Delay")
        await sleep(delay)
        if (res.destroyed || req.socket.destroyed) return
      }
      const transport = decided.find((d) => transportFaults.includes(d.fault._tag))?.fault
      switch (transport?._tag) {
        case "Drop":
          count("Drop")
          req.socket.destroy()
          return
        case "RateLimit": {
          count("RateLimit")
          const headers: http.OutgoingHttpHeaders = { "content-type": "application/json" }
          if (transport.retryAfter !== undefined) headers["retry-after"] = String(transport.retryAfter)
          res.writeHead(429, headers)
          res.end(JSON.stringify({
            jsonrpc: "2.0",
            id: isBatch ? null : (decided[0]?.id ?? null),
            error: { code: 429, message: "Your app has exceeded its compute units per second capacity." }
          }))
          return
        }
        case "ServerError":
          count("ServerError")
          res.writeHead(transport.status, { "content-type": "text/plain" })
          res.end(http.STATUS_CODES[transport.status] ?? "Server Error")
          return
        case "InvalidJson":
          count("InvalidJson")
          res.writeHead(200, { "content-type": "application/json" })
          res.end("<html><body><h1>502 Bad Gateway</h1></body></html>")
          return
        default:
          break
      }

      const answers = await Promise.all(
        decided.map((d) =>
          answer(d.id, d.method, d.params, transportFaults.includes(d.fault._tag) || d.fault._tag === "Delay" ? Fault.Pass() : d.fault)
        )
      )
      const body = JSON.stringify(isBatch ? answers : answers[0])
      if (transport?._tag === "Truncated") {
        count("Truncated")
        const cut = body.slice(0, Math.floor(body.length / 2))
        res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(cut) })
        res.end(cut)
      } else if (transport?._tag === "Reset") {
        count("Reset")
        res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) })
        res.write(body.slice(0, Math.floor(body.length / 2)), () => res.socket?.resetAndDestroy())
      } else {
        res.writeHead(200, { "content-type": "application/json" })
        res.end(body)
      }
    }

    const server = yield* Effect.acquireRelease(
      Effect.async<http.Server, RpcProxyError>((resume) => {
        const server = http.createServer((req, res) => {
          handle(req, res).catch((e: unknown) => {
            // The upstream failed (or the client went away): say so as a 502, as a gateway would.
            if (!res.headersSent && !res.destroyed) {
              res.writeHead(502, { "content-type": "text/plain" })
              res.end(`upstream failed: ${e instanceof Error ? e.message : String(e)}`)
            }
          })
        })
        server.once("error", (cause) => resume(Effect.fail(new RpcProxyError({ cause }))))
        server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
      }),
      (server) =>
        Effect.async<void>((resume) => {
          server.close(() => resume(Effect.void))
          server.closeAllConnections()
        })
    )
    const address = server.address()
    const port = typeof address === "object" && address !== null ? address.port : 0
    const url = `http://127.0.0.1:${port}`
    yield* Effect.logDebug("RPC fault proxy listening").pipe(Effect.annotateLogs({ url, upstream }))

    const logSeeds = (rs: ReadonlyArray<Rule>) =>
      Effect.forEach(rs, (r) => ("seed" in r ? Effect.log(`RPC fault proxy: random faults with seed ${String(r.seed)}`) : Effect.void), {
        discard: true
      })
    yield* logSeeds(initialRules)

    return {
      url,
      port,
      upstream,
      setRules: (...next) => Effect.sync(() => (rules = next)).pipe(Effect.zipRight(logSeeds(next))),
      stats: Effect.sync(() => structuredClone(stats)),
      resetStats: Effect.sync(() => {
        stats = fresh()
      }),
      history: Effect.sync(() => [...history])
    } satisfies RpcProxyInstance
  })
