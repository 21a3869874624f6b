/** `npm run contracts`: recompiles the test contracts into the committed `artifacts.ts`. */
import { writeFileSync } from "node:fs"
import { artifactsPath, compile, render } from "./compile.js"

writeFileSync(artifactsPath, render(compile()))
console.log(`wrote ${artifactsPath}`)
