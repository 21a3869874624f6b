import { SqlClient } from "@effect/sql"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import * as Migrations from "../../src/storage/migrations.js"

it.effect("isOurs: a migrated database, or one only begun; not another program's, even with our table names", () =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const tables = (yield* sql<{ name: string }>`SELECT name FROM sqlite_master WHERE type = 'table'`).map((r) => r.name)
    const recorded = yield* sql<Migrations.Recorded>`SELECT migration_id, name FROM effect_sql_migrations`
    expect(recorded.map((r) => r.name)).toEqual(["events", "voting", "accounts"])
    expect(Migrations.isOurs(tables, recorded)).toBe(true)
    // Begun but not migrated (a run stopped before the first migration): ours.
    expect(Migrations.isOurs(["effect_sql_migrations"], [])).toBe(true)
    // A newer version's further migration: ours, for the schema guard to refuse.
    expect(Migrations.isOurs(tables, [...recorded, { migration_id: 4, name: "later" }])).toBe(true)
    // Another program's: tables of our names without the migrator's record, or migrations not ours.
    expect(Migrations.isOurs(["accounts", "events"], [])).toBe(false)
    expect(Migrations.isOurs(["effect_sql_migrations", "users"], [{ migration_id: 1, name: "users" }])).toBe(false)
  }).pipe(Effect.provide(Migrations.layer.pipe(Layer.provideMerge(SqliteClient.layer({ filename: ":memory:" })), Layer.orDie))))
