import { rm } from 'node:fs/promises'
import { Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { KaError } from '../../bundle/errors.js'
import { Connections, type Splittable } from './connections.js'
import type { Downloaded, DownloadRequest } from './download.js'
import { PrefixHash } from '../../bundle/hasher.js'
import { type Attempt, headerValue, type HttpOptions, redactUrl, request, RETRY_STATUS, retryAfterMs, statusError, Transient, withRetries } from './http.js'
import { PartialFile, rangesPath } from './partial.js'
import { contiguous, drop, type Range, RATE_WINDOW_MS, rangesFrom, SPLIT_WAIT_MS, SplitPolicy, take } from './ranges.js'

/** An HTTP answer as undici gives it. */
type Response = Awaited<ReturnType<typeof request>>

/** The range is complete: its response was cut where the range now ends. */
class RangeDone extends Error {}
/** How often one transfer may start from zero because the server's answers did not fit (a 416 on resume, a resume elsewhere) before it gives up. */
const MAX_START_OVER = 3

/** A range this download no longer has (it started over), stopping its worker quietly. */
class Dropped extends Error {}

const PERSIST_MS = 1000
/**
 * One download into one partial file, as one or more byte ranges, each with its own
 * connection, retries and stall watch. The sha256 is taken over the file in order as its
 * written prefix grows, on the hash worker (which reads the bytes back from the page
 * cache), so the main thread only moves bytes.
 */
export class Transfer implements Splittable {
  private ranges: Range[] = []
  private total: number | undefined
  private readonly file: PartialFile
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
  private readonly splits = new SplitPolicy()
  private readonly pool: Connections

  constructor(
    private readonly req: DownloadRequest,
    private readonly opts: HttpOptions,
  ) {
    this.pool = opts.connections ?? Connections.unlimited()
    this.file = new PartialFile(req.partial)
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
        if (this.ranges.length > 1 && this.file.isOpen) await this.persistNow().catch(() => {})
        throw this.failure
      }
      this.grew()
      const { digest, size: hashed } = await this.prefix.digest()
      const size = this.total ?? hashed
      if (hashed !== size) throw new Error(`${this.req.what}: hashed ${hashed} of ${size} bytes`)
      await this.file.close()
      await rm(rangesPath(this.req.partial), { force: true })
      return { digest, size, requests: this.requests, resumed: this.resumed }
    } catch (e) {
      this.prefix.forget()
      if ((e as KaError).code === 'EBADSIZE' || (e as KaError).code === 'EINTEGRITY') {
        await this.file.discard()
        this.req.onDiscard?.()
      }
      throw e
    } finally {
      this.req.signal?.removeEventListener('abort', onOuter)
      this.pool.unregister(this)
      await this.file.close()
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
    this.startWorker(this.splits.probe(r, Date.now()), release)
    setTimeout(() => this.pool.offer(), SPLIT_WAIT_MS + 10).unref()
  }

  splitting(): boolean {
    return this.splits.waiting(this.ranges, Date.now())
  }

  /** The range a split would take half of, when this transfer may split at all. */
  private widest(): Range | undefined {
    if (this.noRanges || this.total === undefined || this.failure !== undefined) return undefined
    return this.splits.candidate(this.ranges, Date.now())
  }

  /** What the partial file holds already, as the ranges still to fetch. */
  private async load(): Promise<void> {
    const { total, done } = await this.file.load(this.req.size)
    this.total = total
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

  /** One request for what `r` still lacks, its answer judged, its body written. */
  private async attempt(r: Range, progressed: () => void, a: Attempt): Promise<void> {
    const { req, opts } = this
    this.requests++
    const last = r.end === Number.POSITIVE_INFINITY || r.end === this.total
    const headers: Record<string, string> = { 'accept-encoding': 'identity', ...(await req.headers?.()) }
    if (r.pos > 0 || !last) headers.range = last ? `bytes=${r.pos}-` : `bytes=${r.pos}-${r.end - 1}`
    const res = await request(req.url, { dispatcher: opts.dispatcher, method: 'GET', headers, signal: a.signal })
    if (res.statusCode === 401 && req.onUnauthorized) return this.unauthorized(res)
    if (res.statusCode === 416 && r.pos > 0 && last && !r.probeOf) return this.notSatisfiable(r, res)
    if (res.statusCode !== 200 && res.statusCode !== 206) {
      const body = await res.body.text().catch(() => '')
      if (RETRY_STATUS.has(res.statusCode)) throw new Transient(`HTTP ${res.statusCode}`, retryAfterMs(res.headers['retry-after']))
      throw req.onHttpError?.(res.statusCode, body.slice(0, 64 << 10)) ?? statusError(req.what, req.url, res.statusCode)
    }
    const skip = await this.fit(r, res, headers.range !== undefined)
    if (skip !== undefined) await this.stream(r, res, skip, progressed, a)
  }

  private async unauthorized(res: Response): Promise<never> {
    const { req } = this
    await res.body.dump()
    if (await req.onUnauthorized!(headerValue(res.headers['www-authenticate']))) throw new Transient('HTTP 401: authenticated again')
    throw new KaError('EREGISTRY', `${req.what}: ${redactUrl(req.url)}: UNAUTHORIZED; check the credentials for this registry in ~/.docker/config.json`, {
      url: redactUrl(req.url),
      status: 401,
      registryCode: 'UNAUTHORIZED',
    })
  }

  /** A 416 on resume: we may hold the whole file already, and the hash decides; otherwise start over. */
  private async notSatisfiable(r: Range, res: Response): Promise<void> {
    const { req } = this
    await res.body.dump()
    this.grew()
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

  /**
   * Fits a 200 or 206 to `r`: a split confirmed, a server that ignores ranges, the file's size
   * learnt. Returns how many leading bytes of the body to skip, or undefined when the body
   * was let go (a split not taken, a probe the server did not answer with its range).
   */
  private async fit(r: Range, res: Response, ranged: boolean): Promise<number | undefined> {
    let skip = 0
    if (res.statusCode === 206) {
      const m = /^bytes (\d+)-\d+\/(\d+|\*)/.exec(String(res.headers['content-range'] ?? ''))
      if (Number(m?.[1]) !== r.pos) {
        await res.body.dump()
        if (r.probeOf) {
          this.noRanges = true
          return undefined
        }
        return this.restart(r, `server resumed at byte ${m?.[1]}, not ${r.pos}`)
      }
      if (this.total === undefined && m?.[2] !== '*') this.learnTotal(Number(m?.[2]))
      if (r.probeOf) {
        const confirmed = this.splits.confirm(r, this.ranges)
        if (confirmed === undefined) {
          await res.body.destroy()
          return undefined
        }
        skip = confirmed
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
        return undefined
      }
      await this.startOver(r)
    }
    if (res.statusCode === 200) {
      // A server that does not say it takes ranges is not asked for one: one connection, as ever.
      if (!/\bbytes\b/.test(headerValue(res.headers['accept-ranges']) ?? '')) this.noRanges = true
      const length = Number(headerValue(res.headers['content-length']))
      if (this.total === undefined && Number.isSafeInteger(length)) this.learnTotal(length)
    }
    return skip
  }

  /** The body into the partial file at `r.pos`, past `skip` bytes, to the end of `r`. */
  private async stream(r: Range, res: Response, skip: number, progressed: () => void, a: Attempt): Promise<void> {
    const fh = await this.file.open()
    const gen = this.generation
    r.streaming = true
    r.since = Date.now()
    r.moved = 0
    // Once its rate is known, an idle connection may take half of it.
    const nudge = setTimeout(() => this.pool.offer(), RATE_WINDOW_MS + 10)
    nudge.unref()
    const wrote = (n: number) => {
      r.moved = (r.moved ?? 0) + n
      this.grew()
      a.moved(n)
      progressed()
      this.req.onBytes?.(n)
      if (this.ranges.length > 1 && Date.now() - this.lastPersist > PERSIST_MS) void this.persistNow().catch(() => {})
    }
    try {
      await pipeline(
        res.body,
        new Writable({
          // Chunks that arrive while a write is in flight are batched into one writev.
          highWaterMark: 1 << 20,
          writev: (items: { chunk: Buffer }[], cb) => {
            let chunks = items.map((i) => i.chunk)
            if (skip > 0) [chunks, skip] = drop(chunks, skip)
            const fitted = this.fitChunks(r, chunks)
            if (fitted instanceof Error) return cb(fitted)
            const n = fitted.reduce((sum, c) => sum + c.length, 0)
            if (n === 0) return cb(r.pos >= r.end ? new RangeDone() : null)
            const at = r.pos
            r.writingTo = at + n
            fh.writev(fitted, at).then(
              () => {
                r.writingTo = undefined
                if (gen !== this.generation || r.stop.signal.aborted) return cb(new Dropped())
                r.pos = at + n
                wrote(n)
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

  /** The chunks cut at the end of `r`; past the pinned size of the whole file, an error. */
  private fitChunks(r: Range, chunks: Buffer[]): Buffer[] | KaError {
    const { req } = this
    const n = chunks.reduce((sum, c) => sum + c.length, 0)
    if (r.pos + n <= r.end) return chunks
    if (req.size !== undefined && r.end === req.size)
      return new KaError('EBADSIZE', `${req.what}: ${redactUrl(req.url)} sent more than the ${req.size} bytes the lock pins; check --mirror or re-lock`, {
        url: redactUrl(req.url),
        size: req.size,
      })
    return take(chunks, r.end - r.pos)
  }

  private learnTotal(total: number): void {
    this.total = total
    if (this.req.size === undefined) this.req.onSize?.(total)
    const tail = this.ranges.at(-1)
    if (tail?.end === Number.POSITIVE_INFINITY) tail.end = total
  }

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

  /** Throws everything away and makes `r` the whole file from byte 0 (a server that ignored Range, or resumed elsewhere). */
  private async startOver(r: Range): Promise<void> {
    this.generation++
    this.req.onDiscard?.()
    for (const other of this.ranges) if (other !== r) other.stop.abort(new Dropped())
    const had = this.ranges.reduce((n, x) => n + x.pos - x.start, 0)
    if (had > 0) this.req.onBytes?.(-had)
    r.start = r.pos = 0
    r.end = this.total ?? Number.POSITIVE_INFINITY
    r.probeOf = undefined
    this.ranges = [r]
    this.prefix.forget()
    this.prefix = new PrefixHash(this.req.partial)
    await this.file.empty()
  }

  /** The written prefix, to the hash worker and to whoever follows the file (packing). */
  private grew(): void {
    const n = contiguous(this.ranges)
    this.prefix.grow(n)
    this.req.onPrefix?.(n)
  }

  private persistNow(): Promise<void> {
    this.lastPersist = Date.now()
    return this.file.persist(() => ({ total: this.total, ranges: this.ranges }))
  }
}
