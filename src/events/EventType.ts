/**
 * An event type: the resolution type name plus the `Schema` that turns its payload into bytes.
 * The same value is used by the listener that broadcasts and by the resolution that decodes,
 * so both ends agree on the payload's type.
 */
import { Data, Effect, Either, ParseResult, Schema } from "effect"

/** A payload that could not be encoded to, or decoded from, its event type's bytes. */
export class PayloadCodecError extends Data.TaggedError("PayloadCodecError")<{
  readonly type: string
  readonly direction: "encode" | "decode"
  readonly cause: unknown
  /** Which item failed, for a call over many (`encodeAll`, `decodeAll`). */
  readonly index?: number
}> {
  override get message() {
    const which = this.index === undefined ? "" : ` (item ${this.index})`
    return `cannot ${this.direction} a "${this.type}" payload${which}: ${describe(this.cause)}; ` +
      `check that the payload matches the event type's schema`
  }
}

/**
 * A name no event type may have. An event's id hashes `utf8(name) || 0x00 || body`, so a name
 * holding NUL, or one whose UTF-8 bytes another name shares, would let two events of different
 * types share an id (and a proposer pass one off as the other).
 */
export class InvalidEventTypeName extends Data.TaggedError("InvalidEventTypeName")<{
  readonly name: string
  readonly reason: string
}> {
  override get message() {
    return `invalid event type name ${JSON.stringify(this.name)}: ${this.reason}; ` +
      `name it with letters, digits and punctuation, as "credit_account"`
  }
}

/** Why `name` cannot name an event type, or `undefined` when it can. */
export const nameProblem = (name: string): string | undefined => {
  if (name.length === 0) return "it is empty"
  if (/\s/u.test(name)) return "it contains white space"
  if (/\p{Cc}/u.test(name)) return "it contains a control character (NUL ends the name in an event's id)"
  if (/\p{Cs}/u.test(name)) {
    return "it has a lone surrogate, which UTF-8 cannot hold (names differing only there would share an id)"
  }
  return undefined
}

/** Names an event type (and so a resolution type): see `nameProblem`. */
export interface EventType<A, I = Uint8Array> {
  readonly name: string
  /** Transforms the payload to the bytes that are stored, voted on and hashed into the id. */
  readonly schema: Schema.Schema<A, I>
  /** Encodes a payload to its body bytes. */
  readonly encode: (payload: A) => Effect.Effect<Uint8Array, PayloadCodecError>
  /** Decodes body bytes to a payload. */
  readonly decode: (body: Uint8Array) => Effect.Effect<A, PayloadCodecError>
  /** `encode` of many payloads as one step; fails on the first that cannot be, naming its index. */
  readonly encodeAll: (payloads: ReadonlyArray<A>) => Effect.Effect<ReadonlyArray<Uint8Array>, PayloadCodecError>
  /** `decode` of many bodies as one step; fails on the first that cannot be, naming its index. */
  readonly decodeAll: (bodies: ReadonlyArray<Uint8Array>) => Effect.Effect<ReadonlyArray<A>, PayloadCodecError>
  /**
   * Checks that every body would decode, without making the payloads (what storing raw bodies
   * needs): with the type's `accepts` when it has one, else by `decodeAll`. Fails on the first that
   * would not, naming its index.
   */
  readonly checkAll: (bodies: ReadonlyArray<Uint8Array>) => Effect.Effect<void, PayloadCodecError>
}

export interface Options {
  /**
   * A cheap check of body bytes: `undefined` exactly when `decode` succeeds, else why it fails.
   * For a type whose decoding builds costly payloads while what makes a body valid is a few byte
   * checks (`credit_account` makes bigints from fixed words); its tests should hold it to `decode`.
   */
  readonly accepts?: (body: Uint8Array) => string | undefined
}

/** Any event type, whatever its payload. */
export type AnyEventType = EventType<any, any>

/**
 * Makes an event type. The schema's encoded side must be `Uint8Array`; for JSON payloads
 * compose with `EventType.json`. Throws `InvalidEventTypeName` for a name that cannot be one.
 */
export const make = <A>(
  name: string,
  schema: Schema.Schema<A, Uint8Array>,
  options: Options = {}
): EventType<A, Uint8Array> => {
  const problem = nameProblem(name)
  if (problem !== undefined) throw new InvalidEventTypeName({ name, reason: problem })
  const encoder = parser(Schema.encodeEither(schema), Schema.encode(schema), (cause, index) =>
    new PayloadCodecError({ type: name, direction: "encode", cause, ...(index === undefined ? {} : { index }) }))
  const decoder = parser(Schema.decodeEither(schema), Schema.decode(schema), (cause, index) =>
    new PayloadCodecError({ type: name, direction: "decode", cause, ...(index === undefined ? {} : { index }) }))
  const { accepts } = options
  const checkAll = accepts === undefined
    ? (bodies: ReadonlyArray<Uint8Array>) => Effect.asVoid(decoder.all(bodies))
    : (bodies: ReadonlyArray<Uint8Array>) =>
      Effect.suspend(() => {
        for (let index = 0; index < bodies.length; index++) {
          const problem = accepts(bodies[index]!)
          if (problem !== undefined) {
            return Effect.fail(new PayloadCodecError({ type: name, direction: "decode", cause: problem, index }))
          }
        }
        return Effect.void
      })
  return { name, schema, encode: encoder.one, decode: decoder.one, encodeAll: encoder.all, decodeAll: decoder.all, checkAll }
}

/**
 * Synchronous parsing (an `Either`, no fiber work) on the hot path; a schema with asynchronous
 * transformations cannot run that way and falls back to the effectful parser. `all` parses a
 * whole array in one loop: a batch costs one step, not one per item.
 */
const parser = <I, O>(
  sync: (input: I) => Either.Either<O, ParseResult.ParseError>,
  effectful: (input: I) => Effect.Effect<O, ParseResult.ParseError>,
  error: (cause: ParseResult.ParseError, index?: number) => PayloadCodecError
) => {
  // Run when the effect runs, not when it is made: a schema whose transformation throws then
  // fails the effect with a defect (which a caller's `Effect.exit` sees) instead of throwing at
  // whoever built it.
  const one = (input: I, index?: number): Effect.Effect<O, PayloadCodecError> =>
    Effect.suspend(() => {
      const result = sync(input)
      return Either.isRight(result)
        ? Effect.succeed(result.right)
        : result.left.issue._tag === "Forbidden"
        ? Effect.mapError(effectful(input), (cause) => error(cause, index))
        : Effect.fail(error(result.left, index))
    })
  const all = (inputs: ReadonlyArray<I>): Effect.Effect<ReadonlyArray<O>, PayloadCodecError> =>
    Effect.suspend(() => {
      const outputs: Array<O> = []
      for (let i = 0; i < inputs.length; i++) {
        const result = sync(inputs[i]!)
        if (Either.isRight(result)) {
          outputs.push(result.right)
          continue
        }
        if (result.left.issue._tag !== "Forbidden") return Effect.fail(error(result.left, i))
        // An asynchronous schema: the rest one by one, through the effectful parser.
        return Effect.map(
          Effect.forEach(inputs.slice(i), (input, j) => one(input, i + j)),
          (rest) => outputs.concat(rest)
        )
      }
      return Effect.succeed(outputs)
    })
  return { one: (input: I) => one(input), all }
}

/** A `Uint8Array <-> A` schema through UTF-8 JSON, for payloads that need no special encoding. */
export const json = <A, I>(schema: Schema.Schema<A, I>): Schema.Schema<A, Uint8Array> =>
  Schema.compose(Utf8Json, schema as Schema.Schema<A, unknown>) as unknown as Schema.Schema<A, Uint8Array>

const utf8 = new TextDecoder("utf-8", { fatal: true })

/** Bytes that are not UTF-8 fail the decode (a `PayloadCodecError`), rather than throw. */
const Utf8Json: Schema.Schema<unknown, Uint8Array> = Schema.transformOrFail(
  Schema.Uint8ArrayFromSelf,
  Schema.parseJson(),
  {
    strict: true,
    decode: (bytes, _, ast) => {
      try {
        return ParseResult.succeed(utf8.decode(bytes))
      } catch {
        return ParseResult.fail(new ParseResult.Type(ast, bytes, "is not UTF-8 text"))
      }
    },
    encode: (text) => ParseResult.succeed(new TextEncoder().encode(text))
  }
)

const describe = (cause: unknown): string =>
  cause instanceof Error ? cause.message : String(cause)
