/**
 * An event type: the resolution type name plus the `Schema` that turns its payload into bytes.
 * The same value is used by the listener that broadcasts and by the resolution that decodes,
 * so both ends agree on the payload's type.
 */
import { Data, Effect, Either, type ParseResult, Schema } from "effect"

/** A payload that could not be encoded to, or decoded from, its event type's bytes. */
export class PayloadCodecError extends Data.TaggedError("PayloadCodecError")<{
  readonly type: string
  readonly direction: "encode" | "decode"
  readonly cause: unknown
}> {
  override get message() {
    return `cannot ${this.direction} a "${this.type}" payload: ${describe(this.cause)}; ` +
      `check that the payload matches the event type's schema`
  }
}

/** Names an event type (and so a resolution type): non-empty, no whitespace. */
export interface EventType<A, I = Uint8Array> {
  readonly name: string
  /** Transforms the payload to the bytes that are stored, voted on and hashed into the id. */
  readonly schema: Schema.Schema<A, I>
  /** Encodes a payload to its body bytes. */
  readonly encode: (payload: A) => Effect.Effect<Uint8Array, PayloadCodecError>
  /** Decodes body bytes to a payload. */
  readonly decode: (body: Uint8Array) => Effect.Effect<A, PayloadCodecError>
}

/** Any event type, whatever its payload. */
export type AnyEventType = EventType<any, any>

/**
 * Makes an event type. The schema's encoded side must be `Uint8Array`; for JSON payloads
 * compose with `EventType.json`.
 */
export const make = <A>(name: string, schema: Schema.Schema<A, Uint8Array>): EventType<A, Uint8Array> => {
  const encode = parser(Schema.encodeEither(schema), Schema.encode(schema), (cause) =>
    new PayloadCodecError({ type: name, direction: "encode", cause }))
  const decode = parser(Schema.decodeEither(schema), Schema.decode(schema), (cause) =>
    new PayloadCodecError({ type: name, direction: "decode", cause }))
  return { name, schema, encode, decode }
}

/**
 * Synchronous parsing (an `Either`, no fiber work) on the hot path; a schema with asynchronous
 * transformations cannot run that way and falls back to the effectful parser.
 */
const parser = <I, O>(
  sync: (input: I) => Either.Either<O, ParseResult.ParseError>,
  effectful: (input: I) => Effect.Effect<O, ParseResult.ParseError>,
  error: (cause: ParseResult.ParseError) => PayloadCodecError
) =>
(input: I): Effect.Effect<O, PayloadCodecError> => {
  const result = sync(input)
  return Either.isRight(result)
    ? Effect.succeed(result.right)
    : result.left.issue._tag === "Forbidden"
    ? Effect.mapError(effectful(input), error)
    : Effect.fail(error(result.left))
}

/** A `Uint8Array <-> A` schema through UTF-8 JSON, for payloads that need no special encoding. */
export const json = <A, I>(schema: Schema.Schema<A, I>): Schema.Schema<A, Uint8Array> =>
  Schema.compose(Utf8Json, schema as Schema.Schema<A, unknown>) as unknown as Schema.Schema<A, Uint8Array>

const Utf8Json: Schema.Schema<unknown, Uint8Array> = Schema.transform(
  Schema.Uint8ArrayFromSelf,
  Schema.parseJson(),
  {
    strict: true,
    decode: (bytes) => new TextDecoder("utf-8", { fatal: true }).decode(bytes),
    encode: (text) => new TextEncoder().encode(text)
  }
)

const describe = (cause: unknown): string =>
  cause instanceof Error ? cause.message : String(cause)
