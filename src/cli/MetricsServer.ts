/**
 * `--metrics-port N`: one HTTP server with `/metrics` (Prometheus text format) and `/health`.
 *
 * The metrics are Effect's own (`Metric.counter`/`gauge` across the code, tags as labels). They
 * reach Prometheus through the ecosystem's exporter, not a hand-written format:
 * `@effect/opentelemetry`'s `Metrics.layer` bridges Effect's metric registry into an OpenTelemetry
 * `MetricReader`, and that reader is `@opentelemetry/exporter-prometheus`'s `PrometheusExporter`,
 * whose `PrometheusSerializer` writes the text. The exporter's own server is never started
 * (`preventServerStart`): we serve it from an `@effect/platform` server, so `/health` shares the
 * port and the server's life is the caller's `Scope`.
 *
 * Names as scraped: an incremental counter gets Prometheus's `_total` suffix unless it has one
 * (`listener_starts` → `listener_starts_total`); other counters and gauges keep their names.
 * A metric appears once it has been touched (incremented, set or read) in this process.
 *
 * Versions: `@opentelemetry/exporter-prometheus` 0.223.0 pins `sdk-metrics`/`resources`/`core`
 * 2.12.0, the 2.x line that `@effect/opentelemetry` 0.64 accepts; 0.300+ moved to the 3.x SDK and
 * Node 22. Keep every `@opentelemetry/*` 2.x package at the exporter's version, so there is one
 * copy of `MetricReader` and the bridge and the exporter agree on it.
 */
import { HttpRouter, HttpServerResponse } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import * as OtelMetrics from "@effect/opentelemetry/Metrics"
import * as OtelResource from "@effect/opentelemetry/Resource"
import { PrometheusExporter, PrometheusSerializer } from "@opentelemetry/exporter-prometheus"
import { Cause, Context, Data, Duration, Effect, Layer, Metric, type Scope } from "effect"
import { createServer } from "node:http"
import { ListenerManager, type ListenerState } from "../listener/ListenerManager.js"
import { type HealthReport, isHealthy, unhealthy } from "./Health.js"

/** The server could not listen (port taken, no permission, bad host). */
export class MetricsServerError extends Data.TaggedError("MetricsServerError")<{
  readonly host: string
  readonly port: number
  readonly cause: unknown
}> {
  override get message() {
    const reason = this.cause instanceof Error ? this.cause.message : String(this.cause)
    return `cannot serve /metrics and /health on ${this.host}:${this.port}: ${reason} ` +
      `(choose another --metrics-port, or 0 for a free one)`
  }
}

export interface MetricsServerOptions<R = never> {
  /** The TCP port; 0 picks a free one (the address says which). */
  readonly port: number
  /**
   * The interface to listen on. Default `127.0.0.1`, so nothing is exposed by accident; use
   * `0.0.0.0` (or `::`) for a Prometheus on another host.
   */
  readonly host?: string
  /** What `/health` reports: 200 when it finds no problem, 503 with the problems otherwise. */
  readonly health: Effect.Effect<HealthReport, never, R>
  /** A health check slower than this is a problem in itself (default 5 seconds). */
  readonly healthTimeout?: Duration.DurationInput
  /**
   * Runs before each scrape, for gauges that mirror a state rather than count events (e.g.
   * `recordListenerStates`). It cannot fail the scrape: a failure is logged and the scrape goes on.
   */
  readonly beforeScrape?: Effect.Effect<void, never, R>
  /** `service_name` in Prometheus's `target_info` series (default `kwil-listeners`). */
  readonly serviceName?: string
}

const states: ReadonlyArray<ListenerState> = ["running", "backing-off", "stopped", "failed"]

/**
 * Each listener's state, Prometheus's enum shape: `listener_state{listener, state}` is 1 for the
 * state the listener is in and 0 for the others, so `listener_state{state="failed"} == 1` alerts.
 */
export const listenerState = Metric.gauge("listener_state", {
  description: "1 for the state each listener is in (running, backing-off, stopped, failed), 0 for the others"
})

/** Sets `listener_state` for each of `statuses` (a listener's name and the state it is in). */
export const recordStates = (
  statuses: ReadonlyArray<{ readonly name: string; readonly state: ListenerState }>
): Effect.Effect<void> =>
  Effect.forEach(statuses, (status) =>
    Effect.forEach(states, (state) =>
      Metric.set(
        Metric.tagged(Metric.tagged(listenerState, "listener", status.name), "state", state),
        status.state === state ? 1 : 0
      ), { discard: true }), { discard: true })

/** Brings `listener_state` up to date from `ListenerManager.status`: pass it as `beforeScrape`. */
export const recordListenerStates: Effect.Effect<void, never, ListenerManager> = Effect.flatMap(
  Effect.flatMap(ListenerManager, (manager) => manager.status),
  recordStates
)

/** Where the server listens. */
export interface MetricsServerAddress {
  readonly port: number
  /** Base URL, e.g. `http://127.0.0.1:9464`; the endpoints are `${url}/metrics` and `${url}/health`. */
  readonly url: string
}

/** The content type Prometheus expects from a text exposition. */
export const prometheusContentType = "text/plain; version=0.0.4; charset=utf-8"

/** `/health`'s answer: the status code and the JSON body. */
export const healthResponse = (report: HealthReport): HttpServerResponse.HttpServerResponse =>
  isHealthy(report)
    ? HttpServerResponse.unsafeJson({ ...report.details, status: "ok" }, { status: 200 })
    : HttpServerResponse.unsafeJson({ ...report.details, status: "unhealthy", problems: report.problems }, {
      status: 503
    })

/**
 * Serves `/metrics` and `/health` until the scope closes; the finalizer closes the server and
 * unregisters the metric bridge. Fails with `MetricsServerError` when it cannot listen.
 */
export const serve = <R>(
  options: MetricsServerOptions<R>
): Effect.Effect<MetricsServerAddress, MetricsServerError, Scope.Scope | R> =>
  Effect.gen(function*() {
    const host = options.host ?? "127.0.0.1"
    const healthTimeout = options.healthTimeout ?? Duration.seconds(5)

    // Scope labels (`otel_scope_name`) would repeat the bridge's name on every series: left out.
    const exporter = new PrometheusExporter({ preventServerStart: true, withoutScopeInfo: true })
    const serializer = new PrometheusSerializer(undefined, false, undefined, false, true)
    yield* Layer.build(
      OtelMetrics.layer(() => exporter).pipe(
        Layer.provide(OtelResource.layer({ serviceName: options.serviceName ?? "kwil-listeners" }))
      )
    )

    const refresh = (options.beforeScrape ?? Effect.void).pipe(
      Effect.catchAllCause((cause) => Effect.logWarning("updating gauges before a scrape failed", cause))
    )
    const metrics = Effect.zipRight(refresh, Effect.tryPromise(() => exporter.collect())).pipe(
      Effect.tap(({ errors }) =>
        errors.length === 0 ? Effect.void : Effect.logWarning("some metrics could not be collected", errors)
      ),
      Effect.map(({ resourceMetrics }) =>
        HttpServerResponse.text(serializer.serialize(resourceMetrics), { contentType: prometheusContentType })
      ),
      Effect.catchAll((error) =>
        Effect.as(
          Effect.logError("collecting metrics failed", error.cause),
          HttpServerResponse.text(`# collecting metrics failed: ${String(error.cause)}\n`, { status: 500 })
        )
      )
    )

    const health = options.health.pipe(
      Effect.timeoutTo({
        duration: healthTimeout,
        onSuccess: (report) => report,
        onTimeout: () => unhealthy([`the health check took longer than ${Duration.format(healthTimeout)}`])
      }),
      Effect.catchAllCause((cause) => Effect.succeed(unhealthy([`the health check failed: ${Cause.pretty(cause)}`]))),
      Effect.map(healthResponse)
    )

    const router = HttpRouter.empty.pipe(
      HttpRouter.get("/metrics", metrics),
      HttpRouter.get("/health", health),
      HttpRouter.get("/", Effect.succeed(HttpServerResponse.text("kwil-listeners: see /metrics and /health\n")))
    )

    const server = yield* NodeHttpServer.make(() => createServer(), { port: options.port, host }).pipe(
      Effect.mapError((error) => new MetricsServerError({ host, port: options.port, cause: error.cause }))
    )
    yield* server.serve(router)
    const port = server.address._tag === "TcpAddress" ? server.address.port : options.port
    const urlHost = host.includes(":") ? `[${host}]` : host
    return { port, url: `http://${urlHost}:${port}` }
  })

/** The running metrics server's address, for a layer-built node (`MetricsServer.layer`). */
export class MetricsServer extends Context.Tag("kwil-listeners/MetricsServer")<MetricsServer, MetricsServerAddress>() {
  /** `serve` as a layer: the server lives as long as the layer's scope. */
  static readonly layer = <R>(options: MetricsServerOptions<R>): Layer.Layer<MetricsServer, MetricsServerError, R> =>
    Layer.scoped(MetricsServer, serve(options))
}
