import { open, mkdir, rm, stat } from 'node:fs/promises'
import { createHash, type Hash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { dirname } from 'node:path'
import { Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import { EnvHttpProxyAgent, interceptors, request, type Dispatcher } from 'undici'
import { integrityError, Sha256 } from '../bundle/digest.js'
import { KaError } from '../bundle/errors.js'

/** How the builder talks HTTP; every field has a real default (see `httpDefaults`). */
export interface HttpOptions {
  dispatcher: Dispatcher
  /** Attempts that made no progress, after the first, before a transient failure is final. */
  retries: number
  /** First backoff delay; doubles per attempt, capped at 10 s. */
  backoffMs: number
  /** The longest Retry-After we wait for. */
  maxRetryAfterMs: number
  /**
   * A transfer (headers included) that moves fewer than `minRate` bytes a second over
   * `stallWindowMs` is abandoned as stalled and retried (with Range where it had bytes); a
   * stall never counts as progress, so a trickling server ends in EFETCH.
   */
  minRate: number
  stallWindowMs: number
}

/**
 * One dispatcher for the whole process, built at the edge: HTTP(S)_PROXY and NO_PROXY from
 * the environment (either case), redirects followed (undici drops Authorization and
 * cookies when a redirect leaves the origin).
 */
export function createDispatcher(): Dispatcher {
  return new EnvHttpProxyAgent({ headersTimeout: 60_000, bodyTimeout: 60_000 }).compose(interceptors.redirect({ maxRedirections: 10 }))
}

let shared: Dispatcher | undefined
export function httpDefaults(over: Partial<HttpOptions> = {}): HttpOptions {
  if (!over.dispatcher) shared ??= createDispatcher()
  return {
    dispatcher: over.dispatcher ?? shared!,
    retries: envNumber('KUBE_AIRGAP_RETRIES', 5, 0, 100),
    backoffMs: 500,
    maxRetryAfterMs: 60_000,
    minRate: envNumber('KUBE_AIRGAP_MIN_RATE', 1024, 0, 1 << 30),
    stallWindowMs: envNumber('KUBE_AIRGAP_STALL_SECONDS', 60, 1, 3600) * 1000,
    ...over,
  }
}

/** A tuning knob from the environment, checked: one line for a bad value, never a surprise. */
function envNumber(name: string, fallback: number, min: number, max: number): number {
  const text = process.env[name]
  if (text === undefined || text === '') return fallback
  const n = Number(text)
  if (!Number.isInteger(n) || n < min || n > max) throw new KaError('EUSAGE', `${name}=${JSON.stringify(text)}: give a whole number from ${min} to ${max}`)
  return n
}

/** What an attempt gets: a signal that fires when the transfer stalls, and a byte counter for it. */
export interface Attempt {
  signal: AbortSignal
  moved(n: number): void
}

/** Watches one attempt: under `minRate` over a window (no headers at all included), it aborts. */
function watch(opts: HttpOptions, outer?: AbortSignal): Attempt & { stop(): void } {
  const ac = new AbortController()
  let moved = 0
  const timer = setInterval(() => {
    if (moved < (opts.minRate * opts.stallWindowMs) / 1000) ac.abort(new Stalled(`stalled: under ${opts.minRate} bytes/s for ${opts.stallWindowMs / 1000} s`))
    moved = 0
  }, opts.stallWindowMs)
  timer.unref()
  const onOuter = () => ac.abort(outer!.reason)
  // A build stopped before this attempt began stops it at once (no abort event comes later).
  if (outer?.aborted) onOuter()
  else outer?.addEventListener('abort', onOuter, { once: true })
  return {
    signal: ac.signal,
    moved: (n) => {
      moved += n
    },
    stop: () => {
      clearInterval(timer)
      outer?.removeEventListener('abort', onOuter)
    },
  }
}

/** A URL fit for a log line or an error: no credentials, no query string (tokens live there). */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url)
    if (u.username || u.password) {
      u.username = 'REDACTED'
      u.password = ''
    }
    if (u.search) u.search = '?REDACTED'
    u.hash = ''
    return u.toString()
  } catch {
    return '<unparseable url>'
  }
}

export const headerValue = (v: string | string[] | undefined): string | undefined => (Array.isArray(v) ? v[0] : v)

export interface Mirror {
  from: string
  to: string
}

/** `FROM=TO`: requests for URLs starting with FROM go to TO instead (a prefix rewrite). */
export function parseMirror(spec: string): Mirror {
  const i = spec.indexOf('=')
  const from = spec.slice(0, i)
  const to = spec.slice(i + 1)
  if (i <= 0 || !/^https?:\/\/[^/]/.test(from) || !/^https?:\/\/[^/]/.test(to)) {
    throw new KaError(
      'EUSAGE',
      `--mirror ${JSON.stringify(spec)}: expected FROM=TO with two http(s) URL prefixes, e.g. https://dl.k8s.io=https://mirror.example/k8s`,
    )
  }
  return { from: from.replace(/\/+$/, ''), to: to.replace(/\/+$/, '') }
}

/** The longest matching prefix wins, so a specific mirror can override a general one. */
export function applyMirrors(url: string, mirrors: readonly Mirror[]): string {
  let best: Mirror | undefined
  for (const m of mirrors) {
    const boundary = url.length === m.from.length || url[m.from.length] === '/'
    if (url.startsWith(m.from) && boundary && (!best || m.from.length > best.from.length)) best = m
  }
  return best ? best.to + url.slice(best.from.length) : url
}

export class Transient extends Error {
  constructor(
    message: string,
    readonly retryAfterMs?: number,
  ) {
    super(message)
  }
}

/** A transfer abandoned by the stall watch: retried, but never counted as progress. */
class Stalled extends Transient {}

export const RETRY_STATUS = new Set([408, 425, 429, 500, 502, 503, 504])
const TRANSIENT_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'EPIPE',
  'ETIMEDOUT',
  'EAI_AGAIN',
  'ENETUNREACH',
  'EHOSTUNREACH',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_CLOSED',
  'UND_ERR_RES_CONTENT_LENGTH_MISMATCH',
  'UND_ERR_ABORTED',
])

export function retryAfterMs(value: string | string[] | undefined): number | undefined {
  const v = Array.isArray(value) ? value[0] : value
  if (!v) return undefined
  if (/^\d+$/.test(v.trim())) return Number(v.trim()) * 1000
  const at = Date.parse(v)
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now())
}

function isTransient(e: unknown): boolean {
  if (e instanceof Transient) return true
  const err = e as { code?: string; cause?: { code?: string } }
  return TRANSIENT_CODES.has(err?.code ?? '') || TRANSIENT_CODES.has(err?.cause?.code ?? '')
}

/**
 * Runs `attempt` until it succeeds, fails for good, or has failed `retries` times in a row
 * without progress. `attempt` reports progress by returning normally or throwing after
 * calling `progressed()`; progress resets the count, so a slow link that drops now and then
 * still finishes.
 */
export async function withRetries<T>(
  what: string,
  url: string,
  opts: HttpOptions,
  attempt: (progressed: () => void, a: Attempt) => Promise<T>,
  signal?: AbortSignal,
): Promise<T> {
  let failures = 0
  for (;;) {
    let moved = false
    const guard = watch(opts, signal)
    try {
      return await attempt(() => (moved = true), guard)
    } catch (caught) {
      if (signal?.aborted) throw caught
      // Whatever the aborted request threw, the reason is the stall.
      const e = guard.signal.aborted ? guard.signal.reason : caught
      if (e instanceof Stalled) moved = false
      if (!isTransient(e)) {
        // A network error not worth retrying (a host that does not resolve, say) is still the
        // user's one line, not a stack trace.
        const code = (e as { code?: unknown }).code ?? (e as { cause?: { code?: unknown } }).cause?.code
        if (!(e instanceof KaError) && typeof code === 'string')
          throw new KaError('EFETCH', `${what}: ${redactUrl(url)}: ${describe(e)}; check the network, the proxy or --mirror`, { url: redactUrl(url) })
        throw e
      }
      if (moved) failures = 0
      failures++
      if (failures > opts.retries) {
        throw new KaError(
          'EFETCH',
          `${what}: ${redactUrl(url)}: ${describe(e)} (gave up after ${failures} attempts); check the network, the proxy or --mirror`,
          { url: redactUrl(url) },
        )
      }
      const backoff = Math.min(10_000, opts.backoffMs * 2 ** (failures - 1)) * (0.8 + Math.random() * 0.4)
      const wait = e instanceof Transient && e.retryAfterMs !== undefined ? Math.min(e.retryAfterMs, opts.maxRetryAfterMs) : backoff
      await sleep(wait)
    } finally {
      guard.stop()
    }
  }
}

function describe(e: unknown): string {
  const err = e as { code?: string; message?: string; cause?: { code?: string; message?: string } }
  const code = err.code ?? err.cause?.code
  const message = err.cause?.message ?? err.message ?? String(e)
  return code && !message.includes(code) ? `${message} (${code})` : message
}

export function statusError(what: string, url: string, status: number): KaError {
  const hint =
    status === 404 || status === 410
      ? 'the file is not at that address: check the lock and --mirror'
      : status === 401 || status === 403
        ? 'access denied: check the mirror or proxy credentials'
        : 'check the URL, the proxy or --mirror'
  return new KaError('EFETCH', `${what}: ${redactUrl(url)}: HTTP ${status}; ${hint}`, { url: redactUrl(url), status })
}

/** GET a small text (a checksum file). `undefined` when the server says it has none (404). */
export async function fetchText(what: string, url: string, opts: HttpOptions): Promise<string | undefined> {
  return withRetries(what, url, opts, async (_progressed, a) => {
    const res = await request(url, { dispatcher: opts.dispatcher, method: 'GET', signal: a.signal })
    if (res.statusCode === 404) {
      await res.body.dump()
      return undefined
    }
    if (res.statusCode !== 200) {
      await res.body.dump()
      if (RETRY_STATUS.has(res.statusCode)) throw new Transient(`HTTP ${res.statusCode}`, retryAfterMs(res.headers['retry-after']))
      throw statusError(what, url, res.statusCode)
    }
    const text = await res.body.text()
    if (text.length > 4 << 20) throw new KaError('EFETCH', `${what}: ${redactUrl(url)}: a checksum file of ${text.length} bytes is not plausible`)
    return text
  })
}

export interface DownloadRequest {
  /** Names the artifact in messages ("containerd 1.7.16 linux/amd64"). */
  what: string
  url: string
  /** Where the bytes accumulate; kept across crashes so a rerun resumes from its length. */
  partial: string
  expected?: Sha256
  size?: number
  onBytes?: (n: number) => void
  /** Stops the download (the partial file stays, to be resumed). */
  signal?: AbortSignal
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
 * Downloads `url` into `partial`, resuming with HTTP Range from whatever is there already,
 * retrying transient failures, hashing every byte that lands in the file (those read back
 * from an earlier attempt too). Returns the digest; when `expected` is given, a mismatch
 * deletes the partial file and throws EINTEGRITY. Never renames anything: the caller moves
 * the verified file into the cache.
 */
export async function download(req: DownloadRequest, opts: HttpOptions): Promise<Downloaded> {
  await mkdir(dirname(req.partial), { recursive: true })
  let resumedFromDisk = false
  let restarted = false
  for (;;) {
    const result = await downloadOnce(req, opts)
    resumedFromDisk ||= result.resumed
    if (!req.expected || result.digest.equals(req.expected)) return result
    await rm(req.partial, { force: true })
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

async function hashExisting(path: string): Promise<{ hash: Hash; size: number }> {
  const hash = createHash('sha256')
  let size = 0
  const exists = await stat(path).then(
    () => true,
    () => false,
  )
  if (exists) {
    for await (const c of createReadStream(path, { highWaterMark: 1 << 20 })) {
      hash.update(c as Buffer)
      size += (c as Buffer).length
    }
  }
  return { hash, size }
}

async function downloadOnce(req: DownloadRequest, opts: HttpOptions): Promise<Downloaded & { resumed: boolean }> {
  let { hash, size: have } = await hashExisting(req.partial)
  const resumed = have > 0
  let requests = 0
  if (have > 0) req.onBytes?.(have)

  const reset = async (): Promise<void> => {
    await rm(req.partial, { force: true })
    hash = createHash('sha256')
    if (have > 0) req.onBytes?.(-have)
    have = 0
  }

  await withRetries(
    req.what,
    req.url,
    opts,
    async (progressed, a) => {
      if (req.size !== undefined && have === req.size) return
      requests++
      const headers: Record<string, string> = { 'accept-encoding': 'identity', ...(await req.headers?.()) }
      if (have > 0) headers.range = `bytes=${have}-`
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
      if (res.statusCode === 416 && have > 0) {
        // We may hold the whole file already; the hash decides. Otherwise start over.
        await res.body.dump()
        if (req.expected && Sha256.ofHash(hash.copy()).equals(req.expected)) return
        await reset()
        throw new Transient('HTTP 416 on resume; starting over')
      }
      if (res.statusCode !== 200 && res.statusCode !== 206) {
        const body = await res.body.text().catch(() => '')
        if (RETRY_STATUS.has(res.statusCode)) throw new Transient(`HTTP ${res.statusCode}`, retryAfterMs(res.headers['retry-after']))
        throw req.onHttpError?.(res.statusCode, body.slice(0, 64 << 10)) ?? statusError(req.what, req.url, res.statusCode)
      }
      if (res.statusCode === 206) {
        const start = /^bytes (\d+)-/.exec(String(res.headers['content-range'] ?? ''))?.[1]
        if (Number(start) !== have) {
          await res.body.dump()
          await reset()
          throw new Transient(`server resumed at byte ${start}, not ${have}`)
        }
      } else if (have > 0) {
        await reset() // the server ignored Range: take the full body
      }

      const fh = await open(req.partial, 'a')
      try {
        await pipeline(
          res.body,
          new Writable({
            // Chunks that arrive while a write is in flight are batched into one writev.
            highWaterMark: 1 << 20,
            writev(items: { chunk: Buffer }[], cb) {
              const chunks = items.map((i) => i.chunk)
              const n = chunks.reduce((sum, c) => sum + c.length, 0)
              if (req.size !== undefined && have + n > req.size) {
                cb(
                  new KaError('EBADSIZE', `${req.what}: ${redactUrl(req.url)} sent more than the ${req.size} bytes the lock pins; check --mirror or re-lock`, {
                    url: redactUrl(req.url),
                    size: req.size,
                  }),
                )
                return
              }
              fh.writev(chunks).then(
                () => {
                  // Hashed only once it is in the file, so the hash always covers exactly
                  // the bytes a resumed request continues from.
                  for (const c of chunks) hash.update(c)
                  have += n
                  a.moved(n)
                  progressed()
                  req.onBytes?.(n)
                  cb()
                },
                (e: Error) => cb(e),
              )
            },
          }),
        )
      } finally {
        await fh.close()
      }
      if (req.size !== undefined && have < req.size) throw new Transient(`connection closed after ${have} of ${req.size} bytes`)
    },
    req.signal,
  ).catch(async (e) => {
    if ((e as KaError).code === 'EBADSIZE') await rm(req.partial, { force: true })
    throw e
  })
  return { digest: Sha256.ofHash(hash), size: have, requests, resumed }
}
