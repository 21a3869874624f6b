import { SqlClient } from "@effect/sql"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import * as Migrations from "../../src/storage/migrations.js"

it.effect("ownTables are exactly the tables a migrated database holds, so holdsOurs knows each of them", () =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const tables = (yield* sql<{ name: string }>`SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name`)
      .map((r) => r.name)
    expect(tables).toEqual([...Migrations.ownTables].sort())
    expect(tables.every((t) => Migrations.holdsOurs([t]))).toBe(true)
    // Begun but not migrated (a run stopped between the two): still ours; none of ours: another program's.
    expect(Migrations.holdsOurs(["effect_sql_migrations"])).toBe(true)
    expect(Migrations.holdsOurs(["t", "u"])).toBe(false)
    expect(Migrations.holdsOurs(["t", "events"])).toBe(true)
  }).pipe(Effect.provide(Migrations.layer.pipe(Layer.provideMerge(SqliteClient.layer({ filename: ":memory:" })), Layer.orDie))))
