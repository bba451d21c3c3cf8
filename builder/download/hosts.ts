import { KaError } from '../../bundle/errors.js'
import { applyMirrors, type HttpOptions, type Mirror, redactUrl, request } from './http.js'

/** The distinct origins these URLs are fetched from, after the mirrors, with one example of what each serves. */
export function hostsFor(wanted: readonly { url: string; what: string }[], mirrors: readonly Mirror[]): Map<string, string> {
  const out = new Map<string, string>()
  for (const w of wanted) {
    const origin = new URL(applyMirrors(w.url, mirrors)).origin
    if (!out.has(origin)) out.set(origin, w.what)
  }
  return out
}

/**
 * Whether each origin answers at all (any HTTP status counts: only a failure to connect, a
 * TLS error or no answer within `timeoutMs` does not), all at once. Every origin that does
 * not is named in one error, with what it was to serve, before anything is downloaded.
 */
export async function checkHosts(hosts: Map<string, string>, http: HttpOptions, mirrorsFile?: string, timeoutMs = 15_000): Promise<void> {
  const failed: string[] = []
  await Promise.all(
    [...hosts].map(async ([origin, example]) => {
      // A connection of the build's budget, like every other request.
      const release = await http.connections?.acquire(Number.POSITIVE_INFINITY)
      try {
        const res = await request(`${origin}/`, { dispatcher: http.dispatcher, method: 'HEAD', signal: AbortSignal.timeout(timeoutMs) })
        await res.body.dump()
      } catch (e) {
        const why = (e as { code?: string }).code ?? (e as Error).name
        failed.push(`${redactUrl(origin).replace(/\/$/, '')} (${why}; for ${example})`)
      } finally {
        release?.()
      }
    }),
  )
  if (failed.length) {
    throw new KaError(
      'EFETCH',
      `${failed.length} of ${hosts.size} hosts the lock needs cannot be reached: ${failed.sort().join(', ')}; check the network and the proxy (HTTPS_PROXY), or ${mirrorsFile ? `fix or replace their lines in ${mirrorsFile} (or remove them to go direct)` : 'give mirrors for them (--mirrors FILE; manifests/mirrors/china.yaml for users in China)'}`,
      { unreachable: failed },
    )
  }
}
