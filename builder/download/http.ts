import { createRequire } from 'node:module'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Dispatcher } from 'undici'
import { KaError } from '../../bundle/errors.js'
import type { Connections } from './connections.js'

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
  /** The smallest range a split download leaves on either side (a file is split from twice this). */
  segmentBytes: number
  /** The build's connection budget: every request holds one while it runs (none: no limit, no splitting). */
  connections?: Connections
}

/**
 * One dispatcher for the whole process, built at the edge: HTTP(S)_PROXY and NO_PROXY from
 * the environment (either case), redirects followed (undici drops Authorization and
 * cookies when a redirect leaves the origin).
 */
export function createDispatcher(): Dispatcher {
  const { EnvHttpProxyAgent, redirect } = undici()
  return new EnvHttpProxyAgent({ headersTimeout: 60_000, bodyTimeout: 60_000 }).compose(redirect({ maxRedirections: 10 }))
}

/**
 * The parts of undici the builder uses, each from its own module: undici's index loads fetch,
 * WebSocket, its caches and mocks too (65 ms where these take 25, before a cold build's first
 * request). Its one side effect the parts need is done here as the index does it: the request
 * API on every dispatcher (a proxy's tunnel is its `connect`). A build from the cache,
 * `bundle verify` or `--help` never open a connection: they are loaded on the first request.
 * http.test.ts checks these are the very objects undici's index exports.
 */
interface UndiciParts {
  EnvHttpProxyAgent: typeof import('undici').EnvHttpProxyAgent
  redirect: typeof import('undici').interceptors.redirect
  request: (this: Dispatcher, opts: Dispatcher.RequestOptions) => Promise<Dispatcher.ResponseData>
}
let loaded: UndiciParts | undefined
export const undici = (): UndiciParts => {
  if (loaded) return loaded
  const load = createRequire(import.meta.url)
  const api = load('undici/lib/api')
  Object.assign(load('undici/lib/dispatcher/dispatcher').prototype, api)
  loaded = {
    EnvHttpProxyAgent: load('undici/lib/dispatcher/env-http-proxy-agent'),
    redirect: load('undici/lib/interceptor/redirect'),
    request: api.request,
  }
  return loaded
}

/** A request through `opts.dispatcher`, as undici's `request` makes it (its answer's body must be consumed). */
export const request = (
  url: string,
  opts: { dispatcher: Dispatcher } & Omit<Dispatcher.RequestOptions, 'origin' | 'path'>,
): Promise<Dispatcher.ResponseData> => {
  const u = new URL(url)
  return undici().request.call(opts.dispatcher, { ...opts, origin: u.origin, path: `${u.pathname}${u.search}` })
}

let shared: Dispatcher | undefined
/** The process's dispatcher, made on its first request (`request` only ever calls `dispatch`). */
const sharedDispatcher = {
  dispatch: (opts, handler) => {
    shared ??= createDispatcher()
    return shared.dispatch(opts, handler)
  },
} as Pick<Dispatcher, 'dispatch'> as Dispatcher

export function httpDefaults(over: Partial<HttpOptions> = {}): HttpOptions {
  return {
    dispatcher: over.dispatcher ?? sharedDispatcher,
    retries: envNumber('KUBE_AIRGAP_RETRIES', 5, 0, 100),
    backoffMs: 500,
    maxRetryAfterMs: 60_000,
    minRate: envNumber('KUBE_AIRGAP_MIN_RATE', 1024, 0, 1 << 30),
    stallWindowMs: envNumber('KUBE_AIRGAP_STALL_SECONDS', 60, 1, 3600) * 1000,
    segmentBytes: envNumber('KUBE_AIRGAP_SEGMENT_MIB', 1, 1, 1024) << 20,
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
 * still finishes. Each attempt holds a connection of the budget (`acquire`, else one of
 * `opts.connections` at top priority), taken before its stall watch starts and given back
 * before a backoff.
 */
export async function withRetries<T>(
  what: string,
  url: string,
  opts: HttpOptions,
  attempt: (progressed: () => void, a: Attempt) => Promise<T>,
  signal?: AbortSignal,
  acquire?: () => Promise<() => void>,
): Promise<T> {
  let failures = 0
  for (;;) {
    const release = acquire ? await acquire() : await opts.connections?.acquire(Number.POSITIVE_INFINITY, signal)
    let moved = false
    const guard = watch(opts, signal)
    try {
      return await attempt(() => (moved = true), guard)
    } catch (caught) {
      release?.()
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
      release?.()
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
