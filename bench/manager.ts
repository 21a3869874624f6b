/**
 * Benchmark 4, manager: 1,000 listeners started on one validator flip (until every one runs)
 * and stopped on the next (until every scope has closed and every fiber has ended). Baseline: the floor of the same work
 * in bare Effect: 1,000 fibers forked, each opening a scope, then all interrupted and awaited.
 * Measured in the same rounds, two smaller floors for the note: the least a fiber with a scope of
 * its own costs (1,000 root fibers, each forked with its `Scope` already in its context and
 * closing it on exit, running the same listener body as ours; no manager), and 1,000
 * `Effect.fork(Effect.never)` then `Fiber.interruptAll` (no scope, no finalizer), the least an
 * Effect fiber per listener costs.
 * Bar: start + stop under 50 ms.
 */
import { Context, Effect, Fiber, Runtime, Scope } from "effect"
import { makeFleet } from "./fleet.js"
import { median, type Options, type Result, sideBySide } from "./harness.js"

const count = 1_000
/** CPU ms of each flip (this process only): what it costs when the machine is not shared. */
const cpuTimes: Array<number> = []

/** ms of the manager's start-up with the fleet registered (it prepares each listener then). */
const builds: Array<number> = []

/** ms of one start + stop of the fleet, after a first flip (the first time through each path). */
const ours = (flips: number): Promise<Array<number>> =>
  Effect.runPromise(Effect.scoped(Effect.gen(function*() {
    const built = performance.now()
    const fleet = yield* makeFleet(count)
    builds.push(performance.now() - built)
    const t0 = performance.now()
    yield* fleet.start
    yield* fleet.stop
    const times = [performance.now() - t0]
    for (let i = 0; i < flips; i++) {
      const start = performance.now()
      const cpu0 = process.cpuUsage()
      yield* fleet.start
      yield* fleet.stop
      times.push(performance.now() - start)
      const cpu = process.cpuUsage(cpu0)
      cpuTimes.push((cpu.user + cpu.system) / 1000)
    }
    if ((yield* fleet.fibers) !== 0) throw new Error("listener fibers left after a stop")
    return times
  })))

const bare = (): Promise<number> =>
  Effect.runPromise(Effect.gen(function*() {
    const start = performance.now()
    let running = 0
    const fibers = yield* Effect.forEach(Array.from({ length: count }), () =>
      Effect.fork(Effect.scoped(Effect.zipRight(
        Effect.acquireRelease(Effect.sync(() => running++), () => Effect.sync(() => running--)),
        Effect.never
      ))))
    while (running < count) yield* Effect.yieldNow()
    yield* Fiber.interruptAll(fibers)
    if (running !== 0) throw new Error("bare fibers left")
    return performance.now() - start
  }).pipe(Effect.provideService(Scope.Scope, Effect.runSync(Scope.make()))))

/**
 * The scoped floor: ms of 1,000 root fibers, each forked with a `Scope` of its own in its context
 * (closed when the fiber ends) and running the fleet's listener body (`acquireRelease`, then
 * `never`), started until all run, then interrupted until all have closed: what one scope and one
 * finalizer per listener cost in Effect with no manager at all.
 */
const scopedFloor = (): Promise<number> =>
  Effect.runPromise(Effect.gen(function*() {
    const start = performance.now()
    let running = 0
    const body = Effect.zipRight(
      Effect.acquireRelease(Effect.sync(() => running++), () => Effect.sync(() => running--)),
      Effect.never
    )
    const fibers: Array<Fiber.RuntimeFiber<void>> = []
    for (let i = 0; i < count; i++) {
      const scope = Effect.runSync(Scope.make())
      const runtime = Runtime.make({
        context: Context.make(Scope.Scope, scope),
        fiberRefs: Runtime.defaultRuntime.fiberRefs,
        runtimeFlags: Runtime.defaultRuntime.runtimeFlags
      })
      fibers.push(Runtime.runFork(runtime)(Effect.onExit(body, (exit) => Scope.close(scope, exit))))
    }
    while (running < count) yield* Effect.yieldNow()
    for (const fiber of fibers) fiber.unsafeInterruptAsFork(fiber.id())
    yield* Fiber.awaitAll(fibers)
    if (running !== 0) throw new Error("scoped floor fibers left")
    return performance.now() - start
  }))

/** The plain floor: ms of 1,000 `Effect.fork(Effect.never)` and `Fiber.interruptAll` (no scope, no finalizer). */
const floor = (): Promise<number> =>
  Effect.runPromise(Effect.gen(function*() {
    const start = performance.now()
    const fibers = yield* Effect.forEach(Array.from({ length: count }), () => Effect.fork(Effect.never))
    yield* Fiber.interruptAll(fibers)
    return performance.now() - start
  }))

export const run = async (options: Options): Promise<ReadonlyArray<Result>> => {
  const rounds = options.quick ? 5 : 9
  const flips = 5
  let firsts: Array<number> = []
  const floors: Array<number> = []
  const scopedFloors: Array<number> = []
  const figures = await sideBySide(
    rounds,
    async () => {
      const [first, ...rest] = await ours(flips)
      firsts.push(first!)
      return median(rest)
    },
    async () => {
      const times: Array<number> = []
      const floorTimes: Array<number> = []
      const scopedTimes: Array<number> = []
      for (let i = 0; i < flips; i++) {
        // Alternating which goes first, as the rounds do.
        if (i % 2 === 0) {
          times.push(await bare())
          scopedTimes.push(await scopedFloor())
          floorTimes.push(await floor())
        } else {
          floorTimes.push(await floor())
          scopedTimes.push(await scopedFloor())
          times.push(await bare())
        }
      }
      floors.push(median(floorTimes))
      scopedFloors.push(median(scopedTimes))
      return median(times)
    }
  )
  const first = median(firsts)
  return [{
    name: "manager: 1,000 listeners started + stopped on validator flips",
    ours: Math.round(figures.ours * 10) / 10,
    baseline: Math.round(figures.baseline * 10) / 10,
    unit: "ms",
    ratio: figures.ours / figures.baseline,
    bar: "< 50 ms",
    pass: figures.ours < 50 && first < 50,
    note: `median of ${rounds} rounds x ${flips} flips; the very first flip ${Math.round(first * 10) / 10} ms ` +
      `(each listener's context, store and counters are made before it, as the manager starts: ` +
      `${Math.round(median(builds) * 10) / 10} ms for the fleet's layers); baseline: 1,000 bare forked scoped fibers interrupted; ` +
      `scoped floor (a root fiber with its own scope and the same listener body, no manager) ` +
      `${Math.round(median(scopedFloors) * 10) / 10} ms; ` +
      `plain fork+interrupt floor ${Math.round(median(floors) * 10) / 10} ms; ` +
      `our CPU time per flip (median) ${Math.round(median(cpuTimes) * 10) / 10} ms`
  }]
}
