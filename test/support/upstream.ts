import { createCipheriv, createHash } from 'node:crypto'
import { once } from 'node:events'
import { createReadStream, createWriteStream } from 'node:fs'
import { mkdir, stat, writeFile } from 'node:fs/promises'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { dirname, join, normalize } from 'node:path'
import { Transform } from 'node:stream'
import { finished, pipeline } from 'node:stream/promises'
import { inFlight } from './gauge.js'

/**
 * A real HTTP server on loopback that plays GitHub releases, dl.k8s.io, nodejs.org and
 * raw.githubusercontent.com: a file at `<root>/github.com/x/y` is served at
 * `/github.com/x/y`, so a build reaches it through `--mirror https://github.com=<url>/github.com`.
 * Ranges are honoured like a CDN; faults are injected per path on demand; every request is
 * logged with the bytes actually sent.
 */
export type Fault =
  | { kind: 'status'; status: number; times: number; retryAfter?: string }
  | { kind: 'cut'; afterBytes: number; times: number }
  | { kind: 'wrong-bytes' }
  | { kind: 'slow'; bytesPerSecond: number }
  /** The answer waits until `until` settles (the request holds its connection meanwhile). */
  | { kind: 'hold'; until: Promise<void> }

export interface LoggedRequest {
  method: string
  path: string
  range?: string
  status: number
  bytesSent: number
  viaProxy: boolean
  /** When it arrived (`Date.now()`). */
  at: number
}

export interface Upstream {
  url: string
  root: string
  log: LoggedRequest[]
  /** Per-connection rate limit for every body, in bytes per second (0: none). */
  throttle: number
  /** One rate limit shared by every body at once, in bytes per second (0: none): a site's uplink. */
  uplink: number
  /** false: a server that ignores Range and does not say Accept-Ranges (every GET a 200 with the whole file). */
  ranges: boolean
  fault(path: string, fault: Fault): void
  clearFaults(): void
  close(): Promise<void>
}

export async function startUpstream(root: string): Promise<Upstream> {
  const faults = new Map<string, Fault[]>()
  const log: LoggedRequest[] = []
  const up: Upstream = {
    url: '',
    root,
    log,
    throttle: 0,
    uplink: 0,
    ranges: true,
    fault: (path, f) => faults.set(path, [...(faults.get(path) ?? []), f]),
    clearFaults: () => faults.clear(),
    close: async () => {
      server.closeAllConnections()
      await new Promise<void>((r) => server.close(() => r()))
    },
  }

  const takeFault = (path: string): Fault | undefined => {
    const list = faults.get(path)
    const f = list?.[0]
    if (!f || !list) return undefined
    if ('times' in f) {
      f.times--
      if (f.times <= 0) list.shift()
    }
    return f
  }

  // The uplink: every body's bytes queue for one shared clock.
  let uplinkFreeAt = 0
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    void handle(req, res).catch(() => res.destroy())
  })

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const viaProxy = req.headers['x-test-proxy'] === '1'
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname)
    const entry: LoggedRequest = {
      method: req.method ?? 'GET',
      path,
      status: 0,
      bytesSent: 0,
      viaProxy,
      at: Date.now(),
      ...(req.headers.range ? { range: String(req.headers.range) } : {}),
    }
    log.push(entry)
    inFlight.track(res)
    const fault = takeFault(path)
    if (fault?.kind === 'hold') await fault.until
    if (fault?.kind === 'status') {
      entry.status = fault.status
      res.writeHead(fault.status, fault.retryAfter ? { 'retry-after': fault.retryAfter } : {})
      res.end(`fault ${fault.status}\n`)
      return
    }
    const file = join(root, normalize(path).replace(/^(\.\.(\/|$))+/, ''))
    const st = await stat(file).catch(() => undefined)
    if (!st?.isFile()) {
      entry.status = 404
      res.writeHead(404).end('not found\n')
      return
    }
    let start = 0
    let end = st.size - 1
    const m = up.ranges ? /^bytes=(\d+)-(\d*)$/.exec(String(req.headers.range ?? '')) : null
    if (m) {
      start = Number(m[1])
      if (m[2]) end = Math.min(end, Number(m[2]))
      if (start >= st.size) {
        entry.status = 416
        res.writeHead(416, { 'content-range': `bytes */${st.size}` }).end()
        return
      }
      entry.status = 206
      res.writeHead(206, { 'content-length': end - start + 1, 'content-range': `bytes ${start}-${end}/${st.size}`, 'accept-ranges': 'bytes' })
    } else {
      entry.status = 200
      res.writeHead(200, { 'content-length': st.size, ...(up.ranges ? { 'accept-ranges': 'bytes' } : {}) })
    }
    if (req.method === 'HEAD') return void res.end()

    const rate = fault?.kind === 'slow' ? fault.bytesPerSecond : up.throttle
    const shaped = rate || up.uplink
    const cutAt = fault?.kind === 'cut' ? fault.afterBytes : Infinity
    const wrong = fault?.kind === 'wrong-bytes'
    const began = Date.now()
    const shaper = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        let out = chunk
        if (wrong) out = Buffer.from(out.map((b) => b ^ 0xff))
        if (entry.bytesSent + out.length > cutAt) {
          const part = out.subarray(0, cutAt - entry.bytesSent)
          entry.bytesSent += part.length
          this.push(part)
          // Give the partial body time to leave, then cut the connection mid-body.
          setTimeout(() => res.socket?.destroy(), 50)
          return
        }
        entry.bytesSent += out.length
        let due = rate ? began + (entry.bytesSent / rate) * 1000 : 0
        if (up.uplink) {
          uplinkFreeAt = Math.max(uplinkFreeAt, Date.now()) + (out.length / up.uplink) * 1000
          due = Math.max(due, uplinkFreeAt)
        }
        if (!due) return cb(null, out)
        setTimeout(() => cb(null, out), Math.max(0, due - Date.now()))
      },
    })
    await pipeline(
      createReadStream(file, { start, end, highWaterMark: shaped ? Math.min(64 << 10, Math.max(4096, Math.floor((rate || up.uplink) / 20))) : 1 << 20 }),
      shaper,
      res,
    ).catch(() => {})
  }

  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  up.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  return up
}

/** Writes `size` deterministic pseudo-random bytes (AES-CTR keyed by `seed`) without holding them in memory. */
export async function writeRandomFile(path: string, size: number, seed: string): Promise<string> {
  await mkdir(dirname(path), { recursive: true })
  const whole = createHash('sha256')
  const cipher = createCipheriv('aes-128-ctr', createHash('sha256').update(seed).digest().subarray(0, 16), Buffer.alloc(16))
  const zeros = Buffer.alloc(1 << 20)
  const out = createWriteStream(path)
  for (let written = 0; written < size; ) {
    const part = cipher.update(zeros.subarray(0, Math.min(zeros.length, size - written)))
    whole.update(part)
    written += part.length
    if (!out.write(part)) await once(out, 'drain')
  }
  out.end()
  await finished(out)
  return whole.digest('hex')
}

export async function writeText(path: string, text: string | Buffer): Promise<void> {
  await mkdir(dirname(path), { recursive: true })
  await writeFile(path, text)
}
