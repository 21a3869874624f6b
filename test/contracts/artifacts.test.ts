import { readFileSync } from "node:fs"
import { describe, expect, it } from "@effect/vitest"
import { artifactsPath, compile, render } from "../../src/extensions/contracts/compile.js"

describe("contract artifacts", () => {
  it("the committed artifacts.ts is what the pinned solc produces now (run `npm run contracts` if not)", () => {
    expect(readFileSync(artifactsPath, "utf8")).toBe(render(compile()))
  })
})
