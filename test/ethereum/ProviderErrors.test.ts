import { describe, expect, it } from "@effect/vitest"
import { Duration, Option } from "effect"
import {
  HttpRequestError,
  InternalRpcError,
  InvalidInputRpcError,
  InvalidParamsRpcError,
  LimitExceededRpcError,
  MethodNotFoundRpcError,
  RpcRequestError,
  SocketClosedError,
  TimeoutError,
  UnknownRpcError
} from "viem"
import type { RangeHint } from "../../src/ethereum/errors.js"
import { isHealable } from "../../src/ethereum/errors.js"
import { fromViemError, parseRangeHint, redactUrl } from "../../src/ethereum/ProviderErrors.js"

const url = "https://eth.example.com/v3/SECRET_KEY"

/** Provider messages seen in the wild → what they say about the next range. */
const table: ReadonlyArray<readonly [string, RangeHint]> = [
  ["query returned more than 10000 results", { _tag: "Shrink" }],
  ["query returned more than 10000 results. Try with this block range [0x1E8480, 0x1E8F7B].", { _tag: "Suggested", blocks: 0x1e8f7b - 0x1e8480 + 1 }],
  ["Log response size exceeded. this block range should work: [0x10, 0x1f]", { _tag: "Suggested", blocks: 16 }],
  ["block range is too wide", { _tag: "Shrink" }],
  ["eth_getLogs is limited to a 10,000 range", { _tag: "Limit", blocks: 10_000 }],
  ["eth_getLogs and eth_newFilter are limited to a 10,000 blocks range", { _tag: "Limit", blocks: 10_000 }],
  ["exceed maximum block range: 5000", { _tag: "Limit", blocks: 5000 }],
  ["block range too large", { _tag: "Shrink" }],
  ["Block range is too large", { _tag: "Shrink" }],
  ["range limit exceeded", { _tag: "Shrink" }],
  [
    "Log response size exceeded. You can make eth_getLogs requests with up to a 2K block range and no limit on the response size, or you can request any block range with a cap of 10K logs in the response.",
    { _tag: "Limit", blocks: 2000 }
  ],
  ["maximum block range is 2000", { _tag: "Limit", blocks: 2000 }],
  ["invalid block range params: maximum block range: 50000", { _tag: "Limit", blocks: 50_000 }],
  ["ranges over 1000 blocks are not supported, limited to a 1000 blocks range", { _tag: "Limit", blocks: 1000 }],
  ["query exceeds max results 20000, retry with the range 1-100", { _tag: "Shrink" }],
  ["requested too many blocks from 0 to 16777216, maximum is set to 2048", { _tag: "Limit", blocks: 2048 }],
  ["Max range: 3500", { _tag: "Limit", blocks: 3500 }],
  ["Maximum allowed number of requested blocks is 1000", { _tag: "Limit", blocks: 1000 }],
  ["block range is too wide (maximum 1024)", { _tag: "Limit", blocks: 1024 }],
  ["limited to 5000 block", { _tag: "Limit", blocks: 5000 }],
  ["backend response too large", { _tag: "Shrink" }],
  ["logs matched by query exceeds limit of 10000", { _tag: "Shrink" }],
  ["the range 1-100000 exceeds the range allowed for your plan (100000 > 5000).", { _tag: "Limit", blocks: 5000 }],
  ["Block range limit exceeded.", { _tag: "Shrink" }],
  ["please limit the query to at most 1000 blocks", { _tag: "Limit", blocks: 1000 }],
  ["query exceeds max block range 1000", { _tag: "Limit", blocks: 1000 }],
  ["block range greater than 10000 max", { _tag: "Limit", blocks: 10_000 }],
  ["eth_getLogs range is too large, max is 10k blocks", { _tag: "Limit", blocks: 10_000 }],
  ["query must be smaller than size 1024", { _tag: "Limit", blocks: 1024 }],
  ["response size should not greater than 10000000 bytes", { _tag: "Shrink" }],
  ["Requested range exceeds maximum RPC range limit", { _tag: "Shrink" }]
]

describe("parseRangeHint", () => {
  it.each(table)("%s", (message, hint) => {
    expect(parseRangeHint(message)).toEqual(Option.some(hint))
  })

  it("is none for messages that are not range refusals", () => {
    for (const m of ["execution reverted", "header not found", "rate limit exceeded", "invalid argument 0: hex string"]) {
      expect(parseRangeHint(m)).toEqual(Option.none())
    }
  })
})

const rpcError = (code: number, message: string, status?: number) =>
  new RpcRequestError({
    body: { method: "eth_getLogs" },
    error: { code, message },
    url,
    ...(status === undefined ? {} : { status })
  })

const getLogs = { method: "eth_getLogs", blocks: 1000 }
const blockNumber = { method: "eth_blockNumber" }

describe("fromViemError", () => {
  it("range refusals, whatever code they come with, carry the requested span and the hint", () => {
    const cases = [
      new LimitExceededRpcError(rpcError(-32005, "query returned more than 10000 results")),
      new InvalidParamsRpcError(rpcError(-32602, "eth_getLogs is limited to a 10,000 range")),
      new InvalidInputRpcError(rpcError(-32000, "exceed maximum block range: 5000")),
      new HttpRequestError({ url, status: 413, details: "Request Entity Too Large" }),
      // Besu past --rpc-max-logs-range: its code is the rate limit's, its words a range refusal.
      new LimitExceededRpcError(rpcError(-32005, "Requested range exceeds maximum RPC range limit"))
    ]
    const mapped = cases.map((e) => fromViemError(getLogs, e))
    expect(mapped.map((e) => e._tag)).toEqual(["RangeTooLarge", "RangeTooLarge", "RangeTooLarge", "RangeTooLarge", "RangeTooLarge"])
    expect(mapped.map((e) => e._tag === "RangeTooLarge" && e.hint)).toEqual([
      { _tag: "Shrink" },
      { _tag: "Limit", blocks: 10_000 },
      { _tag: "Limit", blocks: 5000 },
      { _tag: "Shrink" },
      { _tag: "Shrink" }
    ])
    expect(mapped.every((e) => e._tag === "RangeTooLarge" && e.requested === 1000 && isHealable(e))).toBe(true)
  })

  it("rate limits keep the Retry-After", () => {
    const e = fromViemError(
      blockNumber,
      new HttpRequestError({ url, status: 429, headers: new Headers({ "Retry-After": "7" }), details: "Too Many Requests" })
    )
    expect(e._tag).toBe("RpcRateLimited")
    expect(e._tag === "RpcRateLimited" && e.retryAfter).toEqual(Option.some(Duration.seconds(7)))
    expect(fromViemError(blockNumber, new LimitExceededRpcError(rpcError(-32005, "daily request count exceeded")))._tag)
      .toBe("RpcRateLimited")
    expect(fromViemError(blockNumber, rpcError(429, "Your app has exceeded its compute units per second capacity"))._tag)
      .toBe("RpcRateLimited")
    expect(isHealable(e)).toBe(true)
  })

  it("timeouts, outages, 5xx and unreadable bodies heal; bad requests do not", () => {
    const cases = [
      [new TimeoutError({ body: {}, url }), "RpcTimeout", true],
      [new HttpRequestError({ url, status: 503, details: "Service Unavailable" }), "RpcUnavailable", true],
      [new HttpRequestError({ url, cause: Object.assign(new Error("fetch failed"), { code: "ECONNREFUSED" }) }), "RpcUnavailable", true],
      [new SocketClosedError({ url }), "RpcUnavailable", true],
      [new InternalRpcError(rpcError(-32603, "internal error")), "RpcUnavailable", true],
      [new InvalidInputRpcError(rpcError(-32000, "header not found")), "RpcUnavailable", true],
      [new MethodNotFoundRpcError(rpcError(-32601, "the method eth_foo does not exist")), "RpcBadRequest", false],
      [new InvalidParamsRpcError(rpcError(-32602, "invalid argument 0: hex string has leading zero")), "RpcBadRequest", false],
      // Geth asked for logs past its head (behind the head seen elsewhere): it catches up.
      [new InvalidParamsRpcError(rpcError(-32602, "block range extends beyond current head block")), "RpcUnavailable", true],
      [new HttpRequestError({ url, status: 401, details: "invalid project id" }), "RpcBadRequest", false],
      [new InvalidInputRpcError(rpcError(-32000, "execution reverted")), "RpcBadRequest", false],
      // A 200 whose body is a gateway's HTML page, or cut off: a transport glitch.
      [new UnknownRpcError(new SyntaxError("Unexpected token < in JSON at position 0")), "RpcGarbled", true],
      [new HttpRequestError({ url, cause: new SyntaxError("Unexpected end of JSON input") }), "RpcGarbled", true],
      [new HttpRequestError({ url, cause: new SyntaxError("Unterminated string in JSON at position 41") }), "RpcGarbled", true]
    ] as const
    expect(cases.map(([error]) => fromViemError(blockNumber, error)).map((e) => [e._tag, isHealable(e)]))
      .toEqual(cases.map(([, tag, healable]) => [tag, healable]))
  })

  it("never puts an API key from the URL into its errors", () => {
    const e = fromViemError(blockNumber, new HttpRequestError({ url, status: 503 }))
    expect(e.message).not.toContain("SECRET_KEY")
    expect(e.message).toContain("eth.example.com")
    expect(redactUrl("wss://x.io/ws/v3/KEY?token=1")).toBe("wss://x.io")
  })
})
