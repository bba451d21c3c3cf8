import { createServer, type IncomingMessage, request, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { inFlight } from './gauge.js'

export interface Forwarder {
  url: string
  /** Every request answered, with when it arrived (`Date.now()`). */
  log: { method: string; path: string; status: number; at: number }[]
  /** The next `times` requests whose path contains `match` get `status` (with Retry-After: 0 for 429). */
  failNext(match: string, status: number, times: number): void
  /** Responses whose path contains `match` have one byte flipped. */
  corrupt(match: string | undefined): void
  /** Requests whose path contains `match` wait `ms` before they are forwarded (undefined: none). */
  delay(match: string | undefined, ms?: number): void
  close(): Promise<void>
}

/**
 * A registry that lies or stalls on demand: it forwards everything to a real registry, and
 * can answer 429/5xx, flip a byte of a manifest or blob, or hold requests back a while. Every request is logged, so
 * tests can count what a build asked the registry for.
 */
export async function startForwarder(target: string): Promise<Forwarder> {
  const log: Forwarder['log'] = []
  const fails: { match: string; status: number; times: number }[] = []
  let corruptMatch: string | undefined
  let slow: { match: string; ms: number } | undefined
  const t = new URL(target)
  const server: Server = createServer((req, res) => {
    const path = req.url ?? '/'
    const at = Date.now()
    inFlight.track(res)
    if (slow && path.includes(slow.match)) setTimeout(() => forward(req, res, path, at), slow.ms)
    else forward(req, res, path, at)
  })
  const forward = (req: IncomingMessage, res: ServerResponse, path: string, at: number): void => {
    const f = fails.find((x) => x.times > 0 && path.includes(x.match))
    if (f) {
      f.times--
      log.push({ method: req.method ?? '', path, status: f.status, at })
      res
        .writeHead(f.status, { 'content-type': 'application/json', ...(f.status === 429 ? { 'retry-after': '0' } : {}) })
        .end('{"errors":[{"code":"TOOMANYREQUESTS","message":"rate limited"}]}')
      return
    }
    const up = request({ host: t.hostname, port: t.port, method: req.method, path, headers: { ...req.headers, host: t.host } }, (ures) => {
      log.push({ method: req.method ?? '', path, status: ures.statusCode ?? 0, at })
      const headers = { ...ures.headers }
      if (headers.location) headers.location = headers.location.replace(target, `http://127.0.0.1:${(server.address() as AddressInfo).port}`)
      res.writeHead(ures.statusCode ?? 502, headers)
      if (corruptMatch && path.includes(corruptMatch) && req.method === 'GET') {
        let first = true
        ures.on('data', (c: Buffer) => {
          if (first && c.length > 0) {
            c = Buffer.from(c)
            c[c.length - 1] = c[c.length - 1]! ^ 0x20
            first = false
          }
          res.write(c)
        })
        ures.on('end', () => res.end())
      } else ures.pipe(res)
    })
    up.on('error', () => res.destroy())
    req.pipe(up)
  }
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    log,
    failNext: (match, status, times) => fails.push({ match, status, times }),
    corrupt: (m) => (corruptMatch = m),
    delay: (match, ms = 0) => (slow = match === undefined ? undefined : { match, ms }),
    close: async () => {
      server.closeAllConnections()
      await new Promise<void>((r) => server.close(() => r()))
    },
  }
}
