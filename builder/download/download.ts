import { type FileHandle, mkdir, open, readFile, rm, stat } from 'node:fs/promises'
import { dirname } from 'node:path'
import { Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { writeAtomic } from '../../bundle/atomic.js'
import { integrityError, type Sha256 } from '../../bundle/digest.js'
import { KaError } from '../../bundle/errors.js'
import { Connections, type Splittable } from './connections.js'
import { PrefixHash } from './hasher.js'
import { contiguous, drop, type Range, RATE_WINDOW_MS, rangesFrom, take, validRanges, worthSplitting, writtenSpans } from './ranges.js'
import { type Attempt, headerValue, type HttpOptions, redactUrl, request, RETRY_STATUS, retryAfterMs, statusError, Transient, withRetries } from './http.js'

export interface DownloadRequest {
  /** Names the artifact in messages ("containerd 1.7.16 linux/amd64"). */
  what: string
  url: string
  /** Where the bytes accumulate; kept across crashes so a rerun resumes what is there. */
  partial: string
  expected?: Sha256
  size?: number
  onBytes?: (n: number) => void
  /** Stops the download (the partial file stays, to be resumed). */
  signal?: AbortSignal
  /** Everything else waits on it: it takes the next free connection, whatever its size. */
  urgent?: boolean
  /** Where it goes in the bundle: of equal waiting requests the first goes first, and spare connections split the download that comes first (see `Connections`). */
  order?: string
  /** Extra request headers, asked for before every request (a registry token may expire). */
  headers?: () => Promise<Record<string, string>>
  /** Called on a 401 with the server's challenge; true when new credentials are worth a retry. */
  onUnauthorized?: (challenge: string | undefined) => Promise<boolean>
  /** Turns a final HTTP failure into the error to throw (registries explain theirs in JSON). */
  onHttpError?: (status: number, body: string) => KaError | undefined
}

export interface Downloaded {
  digest: Sha256
  size: number
  /** Requests sent (1 for a clean download). */
  requests: number
}

/**
 * Beside a partial file whose bytes are not one prefix (a split download): the ranges whose
 * bytes were synced to disk before it was written, `{ size, done: [[start, end], ...] }`.
 * A partial file without one holds a prefix: its length is what is there.
 */
export const rangesPath = (partial: string): string => `${partial}.ranges`

/**
 * Downloads `url` into `partial`, resuming with HTTP Range whatever is there already,
 * retrying transient failures, hashing every byte that lands in the file (those kept from
 * an earlier attempt too). With a connection budget (`opts.connections`), a large file is
 * split into ranges fetched on several connections as they free up. Returns the digest;
 * when `expected` is given, a mismatch deletes the partial file and throws EINTEGRITY.
 * Never renames anything: the caller moves the verified file into the cache.
 */
export async function download(req: DownloadRequest, opts: HttpOptions): Promise<Downloaded> {
  await mkdir(dirname(req.partial), { recursive: true })
  let resumedFromDisk = false
  let restarted = false
  for (;;) {
    const result = await new Transfer(req, opts).run()
    resumedFromDisk ||= result.resumed
    if (!req.expected || result.digest.equals(req.expected)) return result
    await discard(req.partial)
    // Bytes kept from an earlier run may belong to an older upstream file; start once from
    // zero before blaming the server.
    if (resumedFromDisk && !restarted) {
      restarted = true
      resumedFromDisk = false
      continue
    }
    // Whose bytes, and what to do: a mirror that serves other bytes, or an upstream that changed a released file.
    const e = integrityError(`${req.what} from ${redactUrl(req.url)}`, req.expected, result.digest, { url: redactUrl(req.url) })
    e.message +=
      ': not the bytes the lock pins, so nothing was kept; if that is a mirror, it serves other bytes (fetch without it); if it is upstream, the file changed since the lock was made: check why before you run bundle lock again'
    throw e
  }
}

const discard = async (partial: string) => {
  await rm(partial, { force: true })
  await rm(rangesPath(partial), { force: true })
}

/** The range is complete: its response was cut where the range now ends. */
class RangeDone extends Error {}
/** How often one transfer may start from zero because the server's answers did not fit (a 416 on resume, a resume elsewhere) before it gives up. */
const MAX_START_OVER = 3

/** A range this download no longer has (it started over), stopping its worker quietly. */
class Dropped extends Error {}

const PERSIST_MS = 1000
/**
 * The longest a spare connection waits for a split to be answered before it goes to a file
 * later in the bundle: a round trip on most links; a server slow to answer ranges keeps
 * nothing idle for long.
 */
const SPLIT_WAIT_MS = 250
/**
 * One download into one partial file, as one or more byte ranges, each with its own
 * connection, retries and stall watch. The sha256 is taken over the file in order as its
 * written prefix grows, on the hash worker (which reads the bytes back from the page
 * cache), so the main thread only moves bytes.
 */
class Transfer implements Splittable {
  private ranges: Range[] = []
  private total: number | undefined
  private fh: FileHandle | undefined
  private prefix: PrefixHash
  /** The server does not take ranges (it did not say it does, or answered one with a 200): no splitting. */
  private noRanges = false
  private generation = 0
  private startedOver = 0
  private requests = 0
  private resumed = false
  private readonly abort = new AbortController()
  private readonly workers = new Set<Promise<void>>()
  private failure: unknown
  private lastPersist = 0
  private splitAskedAt = 0
  private persisting: Promise<void> = Promise.resolve()
  private readonly pool: Connections

  constructor(
    private readonly req: DownloadRequest,
    private readonly opts: HttpOptions,
  ) {
    this.pool = opts.connections ?? Connections.unlimited()
    this.prefix = new PrefixHash(req.partial)
  }

  async run(): Promise<Downloaded & { resumed: boolean }> {
    await this.load()
    const onOuter = () => this.fail(this.req.signal!.reason)
    if (this.req.signal?.aborted) onOuter()
    else this.req.signal?.addEventListener('abort', onOuter, { once: true })
    this.pool.register(this)
    try {
      for (const r of this.ranges) if (r.pos < r.end) this.startWorker(r)
      while (this.workers.size) await Promise.allSettled([...this.workers])
      if (this.failure !== undefined) {
        if (this.ranges.length > 1 && this.fh) await this.persistNow().catch(() => {})
        throw this.failure
      }
      this.prefix.grow(contiguous(this.ranges))
      const { digest, size: hashed } = await this.prefix.digest()
      const size = this.total ?? hashed
      if (hashed !== size) throw new Error(`${this.req.what}: hashed ${hashed} of ${size} bytes`)
      await this.fh?.close()
      this.fh = undefined
      await rm(rangesPath(this.req.partial), { force: true })
      return { digest, size, requests: this.requests, resumed: this.resumed }
    } catch (e) {
      this.prefix.forget()
      if ((e as KaError).code === 'EBADSIZE' || (e as KaError).code === 'EINTEGRITY') await discard(this.req.partial)
      throw e
    } finally {
      this.req.signal?.removeEventListener('abort', onOuter)
      this.pool.unregister(this)
      await this.fh?.close()
    }
  }

  get order(): string | undefined {
    return this.req.order
  }

  splittable(): number {
    const r = this.widest()
    return r ? r.end - (r.writingTo ?? r.pos) : 0
  }

  split(release: () => void): void {
    const r = this.widest()
    if (!r) {
      release()
      return
    }
    const from = r.writingTo ?? r.pos
    const mid = from + Math.floor((r.end - from) / 2)
    r.probing = true
    this.splitAskedAt = Date.now()
    this.startWorker({ start: mid, pos: mid, end: r.end, probeOf: r, stop: new AbortController() }, release)
    setTimeout(() => this.pool.offer(), SPLIT_WAIT_MS + 10).unref()
  }

  splitting(): boolean {
    return this.ranges.some((r) => r.probing) && Date.now() - this.splitAskedAt < SPLIT_WAIT_MS
  }

  /** The range a split would take half of (ranges.ts: worthSplitting), when this transfer may split at all. */
  private widest(): Range | undefined {
    if (this.noRanges || this.total === undefined || this.failure !== undefined) return undefined
    return worthSplitting(this.ranges, Date.now())
  }

  /** What the partial file holds already: the synced ranges its sidecar names, or a prefix. */
  private async load(): Promise<void> {
    const { partial } = this.req
    const st = await stat(partial).catch(() => undefined)
    const side = await readFile(rangesPath(partial), 'utf8')
      .then((t) => JSON.parse(t) as { size?: unknown; done?: unknown })
      .catch(() => undefined)
    let done: [number, number][] = []
    this.total = this.req.size
    if (side && st && validRanges(side, this.req.size, st.size)) {
      this.total = side.size as number
      done = side.done as [number, number][]
    } else {
      if (side) await discard(partial)
      const have = side ? 0 : (st?.size ?? 0)
      if (this.total !== undefined && have > this.total) await discard(partial)
      else if (have > 0) done = [[0, have]]
    }
    this.ranges = rangesFrom(done, this.total ?? Number.POSITIVE_INFINITY)
    const have = done.reduce((n, [a, b]) => n + b - a, 0)
    this.resumed = have > 0
    if (have > 0) this.req.onBytes?.(have)
  }

  private startWorker(r: Range, lease?: () => void): void {
    const w: Promise<void> = this.work(r, lease)
      .catch((e: unknown) => {
        if (!(e instanceof Dropped) && !r.stop.signal.aborted) this.fail(e)
      })
      .finally(() => this.workers.delete(w))
    this.workers.add(w)
  }

  private fail(e: unknown): void {
    if (this.failure !== undefined) return
    this.failure = e
    this.abort.abort(e)
  }

  /** One range to its end: its own retries, a connection from the budget for each attempt. */
  private async work(r: Range, lease?: () => void): Promise<void> {
    const signal = AbortSignal.any([this.abort.signal, r.stop.signal])
    const acquire = async () => {
      const given = lease
      lease = undefined
      // Largest first; a size the lock does not pin ranks below the urgent, with the largest.
      return given ?? this.pool.acquire(this.req.urgent ? Number.POSITIVE_INFINITY : Math.min(r.end - r.pos, Number.MAX_SAFE_INTEGER), signal, this.req.order)
    }
    try {
      await withRetries(
        this.req.what,
        this.req.url,
        this.opts,
        (progressed, a) => (r.pos >= r.end ? Promise.resolve() : this.attempt(r, progressed, a)),
        signal,
        acquire,
      )
    } finally {
      lease?.()
      if (r.probeOf) {
        // The split was not taken: the connections waiting on it may go elsewhere.
        r.probeOf.probing = false
        this.pool.offer()
      }
      r.probeOf = undefined
    }
  }

  private async attempt(r: Range, progressed: () => void, a: Attempt): Promise<void> {
    const { req, opts } = this
    this.requests++
    const last = r.end === Number.POSITIVE_INFINITY || r.end === this.total
    const headers: Record<string, string> = { 'accept-encoding': 'identity', ...(await req.headers?.()) }
    if (r.pos > 0 || !last) headers.range = last ? `bytes=${r.pos}-` : `bytes=${r.pos}-${r.end - 1}`
    const res = await request(req.url, { dispatcher: opts.dispatcher, method: 'GET', headers, signal: a.signal })
    if (res.statusCode === 401 && req.onUnauthorized) {
      await res.body.dump()
      if (await req.onUnauthorized(headerValue(res.headers['www-authenticate']))) throw new Transient('HTTP 401: authenticated again')
      throw new KaError('EREGISTRY', `${req.what}: ${redactUrl(req.url)}: UNAUTHORIZED; check the credentials for this registry in ~/.docker/config.json`, {
        url: redactUrl(req.url),
        status: 401,
        registryCode: 'UNAUTHORIZED',
      })
    }
    if (res.statusCode === 416 && r.pos > 0 && last && !r.probeOf) {
      // We may hold the whole file already; the hash decides. Otherwise start over.
      await res.body.dump()
      this.prefix.grow(contiguous(this.ranges))
      const sofar = await this.prefix.peek()
      if (req.expected && sofar.size === r.pos && sofar.digest.equals(req.expected) && (req.size === undefined || req.size === r.pos)) {
        this.total = r.end = r.pos
        return
      }
      // The server's whole file (416 says its size) is what we hold: judge it, never fetch it again.
      const theirs = Number(/^bytes \*\/(\d+)$/.exec(String(res.headers['content-range'] ?? ''))?.[1] ?? Number.NaN)
      if (theirs === r.pos && sofar.size === r.pos) {
        if (req.size !== undefined && theirs !== req.size)
          throw new KaError(
            'EINTEGRITY',
            `${req.what}: ${redactUrl(req.url)} has ${theirs} bytes, not the ${req.size} pinned: not the pinned file; check --mirror or re-lock`,
            {
              url: redactUrl(req.url),
              size: req.size,
            },
          )
        this.total = r.end = r.pos
        return
      }
      return this.restart(r, 'HTTP 416 on resume; starting over')
    }
    if (res.statusCode !== 200 && res.statusCode !== 206) {
      const body = await res.body.text().catch(() => '')
      if (RETRY_STATUS.has(res.statusCode)) throw new Transient(`HTTP ${res.statusCode}`, retryAfterMs(res.headers['retry-after']))
      throw req.onHttpError?.(res.statusCode, body.slice(0, 64 << 10)) ?? statusError(req.what, req.url, res.statusCode)
    }
    const ranged = headers.range !== undefined
    let skip = 0
    if (res.statusCode === 206) {
      const m = /^bytes (\d+)-\d+\/(\d+|\*)/.exec(String(res.headers['content-range'] ?? ''))
      if (Number(m?.[1]) !== r.pos) {
        await res.body.dump()
        if (r.probeOf) {
          this.noRanges = true
          return
        }
        return this.restart(r, `server resumed at byte ${m?.[1]}, not ${r.pos}`)
      }
      if (this.total === undefined && m?.[2] !== '*') this.learnTotal(Number(m?.[2]))
      if (r.probeOf) {
        // Confirmed: the range it splits now ends where this one starts (past any write in flight).
        const parent = r.probeOf
        const cut = Math.max(r.start, parent.writingTo ?? parent.pos)
        if (!parent.streaming || parent.end !== r.end || cut >= parent.end - 1) {
          await res.body.destroy()
          return
        }
        skip = cut - r.start
        parent.end = r.start = r.pos = cut
        parent.probing = false
        r.probeOf = undefined
        this.ranges.splice(this.ranges.indexOf(parent) + 1, 0, r)
        // Answered: a spare connection that waited for it may split it again.
        this.pool.offer()
        // The file is no longer one prefix: its sidecar goes first.
        await this.persistNow()
      }
    } else if (ranged) {
      // The server ignored Range: no splitting; a resumed range takes the whole body from zero.
      this.noRanges = true
      if (r.probeOf) {
        await res.body.destroy()
        return
      }
      await this.startOver(r)
    }
    if (res.statusCode === 200) {
      // A server that does not say it takes ranges is not asked for one: one connection, as ever.
      if (!/\bbytes\b/.test(headerValue(res.headers['accept-ranges']) ?? '')) this.noRanges = true
      const length = Number(headerValue(res.headers['content-length']))
      if (this.total === undefined && Number.isSafeInteger(length)) this.learnTotal(length)
    }
    this.fh ??= await open(req.partial, 'r+').catch(() => open(req.partial, 'w+'))
    const fh = this.fh
    const gen = this.generation
    r.streaming = true
    r.since = Date.now()
    r.moved = 0
    // Once its rate is known, an idle connection may take half of it.
    const nudge = setTimeout(() => this.pool.offer(), RATE_WINDOW_MS + 10)
    nudge.unref()
    try {
      await pipeline(
        res.body,
        new Writable({
          // Chunks that arrive while a write is in flight are batched into one writev.
          highWaterMark: 1 << 20,
          writev: (items: { chunk: Buffer }[], cb) => {
            let chunks = items.map((i) => i.chunk)
            if (skip > 0) [chunks, skip] = drop(chunks, skip)
            let n = chunks.reduce((sum, c) => sum + c.length, 0)
            if (r.pos + n > r.end) {
              if (req.size !== undefined && r.end === req.size)
                return cb(
                  new KaError('EBADSIZE', `${req.what}: ${redactUrl(req.url)} sent more than the ${req.size} bytes the lock pins; check --mirror or re-lock`, {
                    url: redactUrl(req.url),
                    size: req.size,
                  }),
                )
              chunks = take(chunks, r.end - r.pos)
              n = r.end - r.pos
            }
            if (n === 0) return cb(r.pos >= r.end ? new RangeDone() : null)
            const at = r.pos
            r.writingTo = at + n
            fh.writev(chunks, at).then(
              () => {
                r.writingTo = undefined
                if (gen !== this.generation || r.stop.signal.aborted) return cb(new Dropped())
                r.pos = at + n
                r.moved = (r.moved ?? 0) + n
                this.prefix.grow(contiguous(this.ranges))
                a.moved(n)
                progressed()
                req.onBytes?.(n)
                if (this.ranges.length > 1 && Date.now() - this.lastPersist > PERSIST_MS) void this.persistNow().catch(() => {})
                cb(r.pos >= r.end ? new RangeDone() : null)
              },
              (e: Error) => cb(e),
            )
          },
        }),
      )
    } catch (e) {
      if (!(e instanceof RangeDone)) throw e
    } finally {
      clearTimeout(nudge)
      r.streaming = false
    }
    if (r.end === Number.POSITIVE_INFINITY) this.total = r.end = r.pos
    if (r.pos < r.end)
      throw new Transient(`connection closed after ${r.pos - r.start} of ${r.end - r.start} bytes${this.ranges.length > 1 ? ` of its range` : ''}`)
  }

  private learnTotal(total: number): void {
    this.total = total
    const tail = this.ranges.at(-1)
    if (tail?.end === Number.POSITIVE_INFINITY) tail.end = total
  }

  /** Throws everything away and makes `r` the whole file from byte 0 (a server that ignored Range, or resumed elsewhere). */
  /**
   * Starts over because the server's answer does not fit the bytes held (a 416 whose bytes fail
   * the pin, a resume at another byte): a server whose answers never add up to one file is not
   * retried for ever. (A server that ignores Range starts over too, but goes on with the body.)
   */
  private async restart(r: Range, why: string): Promise<never> {
    if (++this.startedOver > MAX_START_OVER)
      throw new KaError(
        'EINTEGRITY',
        `${this.req.what}: ${redactUrl(this.req.url)}: started over ${MAX_START_OVER} times and its answers still do not add up to the pinned file; check --mirror or re-lock`,
        { url: redactUrl(this.req.url) },
      )
    await this.startOver(r)
    throw new Transient(why)
  }

  private async startOver(r: Range): Promise<void> {
    this.generation++
    for (const other of this.ranges) if (other !== r) other.stop.abort(new Dropped())
    const had = this.ranges.reduce((n, x) => n + x.pos - x.start, 0)
    if (had > 0) this.req.onBytes?.(-had)
    r.start = r.pos = 0
    r.end = this.total ?? Number.POSITIVE_INFINITY
    r.probeOf = undefined
    this.ranges = [r]
    this.prefix.forget()
    this.prefix = new PrefixHash(this.req.partial)
    await this.fh?.truncate(0)
    await discard(this.req.partial)
    await this.fh?.close()
    this.fh = undefined
  }

  /** Records which ranges are on disk: synced first, so the sidecar never names bytes a crash lost. */
  private persistNow(): Promise<void> {
    this.lastPersist = Date.now()
    this.persisting = this.persisting.then(async () => {
      const fh = this.fh
      if (!fh || this.total === undefined) return
      const done = writtenSpans(this.ranges)
      await fh.datasync()
      await writeAtomic(rangesPath(this.req.partial), JSON.stringify({ size: this.total, done }))
    })
    return this.persisting
  }
}
