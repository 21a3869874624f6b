/**
 * A JSON-RPC proxy that adds a round trip's latency, for the catch-up benchmark's "hosted RPC"
 * rows: `node bench/rpcDelay.mjs <target url> <round trip ms>` listens on a free loopback port,
 * prints it, and forwards each POST to the target, holding the request for half the round trip and
 * the answer for the other half. It runs in a process of its own so its work is not charged to
 * the process being measured; it exits when its parent does (stdin closes).
 */
import http from "node:http"

const target = new URL(process.argv[2])
const half = Number(process.argv[3]) / 2
const agent = new http.Agent({ keepAlive: true })

const server = http.createServer((req, res) => {
  const chunks = []
  req.on("data", (chunk) => chunks.push(chunk))
  req.on("end", () => {
    const body = Buffer.concat(chunks)
    setTimeout(() => {
      const upstream = http.request({
        host: target.hostname,
        port: target.port,
        path: target.pathname,
        method: "POST",
        agent,
        headers: { "content-type": "application/json", "content-length": body.length }
      }, (answer) => {
        const out = []
        answer.on("data", (chunk) => out.push(chunk))
        answer.on("end", () => {
          const payload = Buffer.concat(out)
          setTimeout(() => {
            res.writeHead(answer.statusCode ?? 502, { "content-type": "application/json", "content-length": payload.length })
            res.end(payload)
          }, half)
        })
      })
      upstream.on("error", (error) => {
        res.writeHead(502)
        res.end(String(error))
      })
      upstream.end(body)
    }, half)
  })
})

server.listen(0, "127.0.0.1", () => {
  process.stdout.write(`${server.address().port}\n`)
})
process.stdin.on("end", () => process.exit(0))
process.stdin.resume()
