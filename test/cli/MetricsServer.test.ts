import { describe, expect, it } from "@effect/vitest"
import { Data, Duration, Effect, Exit, Layer, Logger, LogLevel, Metric, Option, Schedule, Schema, Scope, TestClock } from "effect"
import * as Health from "../../src/cli/Health.js"
import {
  MetricsServer,
  MetricsServerError,
  prometheusContentType,
  recordListenerStates,
  serve
} from "../../src/cli/MetricsServer.js"
import { rpcCalls } from "../../src/ethereum/EthereumClient.js"
import { EventStore } from "../../src/events/EventStore.js"
import * as EventType from "../../src/events/EventType.js"
import * as Listener from "../../src/listener/Listener.js"
import { ListenerManager, type ListenerState } from "../../src/listener/ListenerManager.js"
import { ListenerRegistry } from "../../src/listener/ListenerRegistry.js"
import { NodeInfo } from "../../src/listener/NodeInfo.js"
import { active, ValidatorStatus } from "../../src/listener/ValidatorStatus.js"
import * as Resolution from "../../src/voting/Resolution.js"
import { ResolutionRegistry } from "../../src/voting/ResolutionRegistry.js"

// ---- a small node: one memory event store, a listener manager, the given listeners ------------

const Probe = EventType.make("metrics_probe", EventType.json(Schema.Struct({ n: Schema.Number })))

/** A node whose manager runs `listeners` at once (the status starts active). */
const node = (...listeners: ReadonlyArray<Listener.Listener<unknown, never>>) =>
  ListenerManager.layer.pipe(
    Layer.provide(
      Layer.mergeAll(
        ListenerRegistry.layer(...listeners),
        ValidatorStatus.layerRef(active),
        NodeInfo.layer({ identity: "node-1", extensions: {} }),
        EventStore.layerMemory.pipe(
          Layer.provide(ResolutionRegistry.layer(Resolution.make({ type: Probe, resolve: () => Effect.void })))
        )
      )
    ),
    Layer.orDie,
    // The manager logs every start and failure; the assertions here are on /metrics and /health.
    Layer.provide(Logger.minimumLogLevel(LogLevel.None))
  )

/** Stores two events, then runs until stopped. */
const broadcaster = Listener.make(
  "probe_listener",
  Effect.gen(function*() {
    const store = yield* EventStore
    yield* store.broadcast(Probe, { n: 1 })
    yield* store.broadcast(Probe, { n: 2 })
    return yield* Effect.never
  })
)

class Broken extends Data.TaggedError("Broken")<{ readonly why: string }> {
  override get message() {
    return this.why
  }
}

/** Fails at once and, under `stop`, stays failed. */
const failing = Listener.make("broken_listener", Effect.fail(new Broken({ why: "rpc unreachable" })), {
  onFailure: "stop"
})

/** Waits (on the real clock: the server is real) until every listener is in `state`. */
const until = (state: ListenerState) =>
  Effect.flatMap(ListenerManager, (manager) => manager.status).pipe(
    Effect.repeat({
      until: (statuses) => statuses.length > 0 && statuses.every((status) => status.state === state),
      schedule: Schedule.spaced("10 millis")
    }),
    Effect.timeout("5 seconds"),
    Effect.orDie
  )

const get = (url: string) =>
  Effect.promise(async () => {
    const response = await fetch(url)
    return { status: response.status, type: response.headers.get("content-type"), body: await response.text() }
  })

/** A sample line of the Prometheus text format: name, optional labels, a value. */
const sample = /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? (-?[0-9.e+]+|NaN|[+-]Inf)$/

// ---- tests -------------------------------------------------------------------------------------

describe("MetricsServer", () => {
  it.live("/metrics answers in Prometheus text format with the project's metrics", () =>
    Effect.gen(function*() {
      yield* until("running")
      yield* Metric.incrementBy(
        Metric.tagged(Metric.tagged(rpcCalls, "method", "eth_getLogs"), "outcome", "RangeTooLarge"),
        3
      )
      yield* Metric.increment(Metric.tagged(Metric.tagged(rpcCalls, "method", "eth_blockNumber"), "outcome", "ok"))
      const { port, url } = yield* serve({
        port: 0,
        health: Effect.succeed(Health.healthy()),
        beforeScrape: recordListenerStates
      })
      expect(port).toBeGreaterThan(0)
      expect(url).toBe(`http://127.0.0.1:${port}`)

      const { body, status, type } = yield* get(`${url}/metrics`)
      expect(status).toBe(200)
      expect(type).toBe(prometheusContentType)
      const lines = body.trimEnd().split("\n")
      for (const line of lines) {
        if (line === "" || line.startsWith("#")) continue
        expect(line).toMatch(sample)
      }
      // Incremental counters get `_total`; tags are labels.
      expect(lines).toContain("# TYPE listener_starts_total counter")
      expect(lines).toContain(`listener_starts_total{listener="probe_listener"} 1`)
      // Registered at 0 when the manager starts: present before any failure.
      expect(lines).toContain(`listener_failures_total{listener="probe_listener"} 0`)
      expect(lines).toContain(`listener_restarts_total{listener="probe_listener"} 0`)
      expect(lines).toContain("# TYPE listener_running gauge")
      expect(lines).toContain("listener_running 1")
      expect(lines).toContain("# TYPE listener_state gauge")
      expect(lines).toContain(`listener_state{listener="probe_listener",state="running"} 1`)
      expect(lines).toContain(`listener_state{listener="probe_listener",state="failed"} 0`)
      expect(lines).toContain("# TYPE kwil_events_stored_total counter")
      expect(lines).toContain("kwil_events_stored_total 2")
      expect(lines).toContain("# TYPE eth_rpc_calls_total counter")
      expect(lines).toContain(`eth_rpc_calls_total{method="eth_getLogs",outcome="RangeTooLarge"} 3`)
      expect(lines).toContain(`eth_rpc_calls_total{method="eth_blockNumber",outcome="ok"} 1`)
      expect(lines).toContain("# HELP eth_rpc_calls_total Ethereum JSON-RPC calls by method and outcome")
      expect(body).toMatch(/^target_info\{.*service_name="kwil-listeners".*\} 1$/m)
      // No OpenTelemetry scope label repeated on every series.
      expect(body).not.toContain("otel_scope_name")

      expect((yield* get(`${url}/nothing`)).status).toBe(404)
    }).pipe(Effect.scoped, Effect.provide(node(broadcaster))))

  it.live("/health is 200 while every listener runs", () =>
    Effect.gen(function*() {
      yield* until("running")
      const { url } = yield* serve({ port: 0, health: Health.listenerHealth() })
      const { body, status, type } = yield* get(`${url}/health`)
      expect(status).toBe(200)
      expect(type).toContain("application/json")
      expect(JSON.parse(body)).toEqual({ status: "ok", listeners: { probe_listener: { state: "running", restarts: 0 } } })
    }).pipe(Effect.scoped, Effect.provide(node(broadcaster))))

  it.live("/health is 503 with the reasons when a listener failed", () =>
    Effect.gen(function*() {
      yield* until("failed")
      const { url } = yield* serve({ port: 0, health: Health.listenerHealth() })
      const { body, status } = yield* get(`${url}/health`)
      expect(status).toBe(503)
      const report = JSON.parse(body)
      expect(report.status).toBe("unhealthy")
      expect(report.listeners).toEqual({ broken_listener: { state: "failed", restarts: 0 } })
      expect(report.problems).toEqual([
        `listener "broken_listener" failed and stays down until the node restarts it: Broken: rpc unreachable`
      ])
      const metrics = (yield* get(`${url}/metrics`)).body.split("\n")
      expect(metrics).toContain(`listener_failures_total{listener="broken_listener"} 1`)
    }).pipe(Effect.scoped, Effect.provide(node(failing))))

  it.live("/health turns a failing or slow check into a 503, never a crash", () =>
    Effect.gen(function*() {
      const dying = yield* serve({ port: 0, health: Effect.die(new Error("boom")) })
      const died = yield* get(`${dying.url}/health`)
      expect(died.status).toBe(503)
      expect(JSON.parse(died.body).problems[0]).toContain("the health check failed")
      const slow = yield* serve({ port: 0, health: Effect.never, healthTimeout: "50 millis" })
      const timedOut = yield* get(`${slow.url}/health`)
      expect(timedOut.status).toBe(503)
      expect(JSON.parse(timedOut.body).problems).toEqual(["the health check took longer than 50ms"])
    }).pipe(Effect.scoped))

  it.live("the server is closed with its scope", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const { url } = yield* serve({ port: 0, health: Effect.succeed(Health.healthy()) }).pipe(Scope.extend(scope))
      expect((yield* get(`${url}/health`)).status).toBe(200)
      yield* Scope.close(scope, Exit.void)
      const after = yield* Effect.tryPromise(() => fetch(`${url}/health`)).pipe(Effect.flip)
      expect(String((after.cause as { cause?: unknown }).cause)).toContain("ECONNREFUSED")
    }))

  it.live("MetricsServer.layer serves for the layer's life; a taken port is a clear MetricsServerError", () =>
    Effect.gen(function*() {
      const { port, url } = yield* MetricsServer
      expect((yield* get(`${url}/`)).status).toBe(200)
      const error = yield* serve({ port, health: Effect.succeed(Health.healthy()) }).pipe(Effect.scoped, Effect.flip)
      expect(error).toBeInstanceOf(MetricsServerError)
      expect(error.message).toContain(`cannot serve /metrics and /health on 127.0.0.1:${port}`)
      expect(error.message).toContain("EADDRINUSE")
    }).pipe(Effect.provide(MetricsServer.layer({ port: 0, health: Effect.succeed(Health.healthy()) }))))
})

describe("Health", () => {
  it.effect("progressCheck reports a stall after maxAge without progress, and recovers", () =>
    Effect.gen(function*() {
      const head = Metric.gauge("test_health_head")
      yield* Metric.set(head, 10)
      const check = yield* Health.progressCheck({ name: "follower", progress: Health.gaugeValue(head), maxAge: "1 minute" })
      yield* TestClock.adjust("59 seconds")
      expect(Health.isHealthy(yield* check)).toBe(true)
      yield* TestClock.adjust("2 seconds")
      const stalled = yield* check
      expect(stalled.problems).toEqual(["follower stalled: no progress for 1m 1s (limit 1m), still at 10"])
      expect(stalled.details).toEqual({ follower: { value: "10", secondsSinceProgress: 61 } })
      yield* Metric.set(head, 11)
      expect(yield* check).toEqual(Health.healthy({ follower: { value: "11", secondsSinceProgress: 0 } }))
    }))

  it.effect("progressCheck does not count time when no progress is expected", () =>
    Effect.gen(function*() {
      let behind = false
      const check = yield* Health.progressCheck({
        name: "checkpoint",
        progress: Effect.succeed(5),
        maxAge: Duration.seconds(30),
        expected: Effect.sync(() => behind)
      })
      yield* TestClock.adjust("10 minutes")
      expect(Health.isHealthy(yield* check)).toBe(true)
      behind = true
      yield* TestClock.adjust("31 seconds")
      expect((yield* check).problems).toHaveLength(1)
    }))

  it.effect("all merges problems and details; listenerHealth can accept stopped listeners", () =>
    Effect.gen(function*() {
      const manager = Layer.succeed(ListenerManager, ListenerManager.of({
        status: Effect.succeed([
          { name: "a", state: "running" as const, restarts: 0, lastError: Option.none(), since: 0 },
          { name: "b", state: "stopped" as const, restarts: 2, lastError: Option.none(), since: 0 }
        ]),
        fibers: Effect.succeed(1),
        join: Effect.never
      }))
      const strict = yield* Health.all(
        Health.listenerHealth(),
        Effect.succeed(Health.unhealthy(["disk full"], { disk: 0.99 }))
      ).pipe(Effect.provide(manager))
      expect(strict.problems).toEqual([
        `listener "b" is not running (is the node a synced validator?)`,
        "disk full"
      ])
      expect(strict.details).toEqual({ listeners: { a: { state: "running", restarts: 0 }, b: { state: "stopped", restarts: 2 } }, disk: 0.99 })
      const lenient = yield* Health.listenerHealth({ allowStopped: true }).pipe(Effect.provide(manager))
      expect(Health.isHealthy(lenient)).toBe(true)
    }))
})
