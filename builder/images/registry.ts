import { integrityError, Sha256 } from '../../bundle/digest.js'
import { KaError } from '../../bundle/errors.js'
import { ACCEPT_MANIFESTS } from '../../bundle/oci.js'
import { imageName, type ImageRef } from '../../bundle/reference.js'
import type { DockerCredentials } from './credentials.js'
import { type Downloaded, type DownloadRequest, download } from '../download/download.js'
import { headerValue, type HttpOptions, redactUrl, request, RETRY_STATUS, retryAfterMs, Transient, withRetries } from '../download/http.js'

/** `--registry-mirror HOST=URL`: one registry's requests go to URL (its path is a repository prefix). */
export interface RegistryMirror {
  host: string
  /** A mirror for one repository only (\`registry.k8s.io/coredns/coredns=URL\`): URL's path is the whole repository there. */
  repository?: string
  url: URL
}

export function parseRegistryMirror(spec: string): RegistryMirror {
  const i = spec.indexOf('=')
  const [host = '', ...repo] = spec.slice(0, i).split('/')
  let url: URL | undefined
  try {
    url = new URL(spec.slice(i + 1))
  } catch {
    url = undefined
  }
  if (i <= 0 || !url || !/^https?:$/.test(url.protocol) || !host || repo.some((s) => !/^[a-z0-9._-]+$/.test(s))) {
    throw new KaError(
      'EUSAGE',
      `--registry-mirror ${JSON.stringify(spec)}: expected HOST=URL or HOST/REPOSITORY=URL, e.g. registry.k8s.io=https://registry.example/google_containers, registry.k8s.io/coredns/coredns=https://registry.example/google_containers/coredns or docker.io=http://127.0.0.1:5000`,
    )
  }
  return {
    host: host === 'index.docker.io' || host === 'registry-1.docker.io' ? 'docker.io' : host,
    ...(repo.length ? { repository: repo.join('/') } : {}),
    url,
  }
}

interface Endpoint {
  /** `https://registry.k8s.io`, or the mirror's origin. */
  base: string
  /** The repository as this endpoint names it (a mirror's path prefix prepended). */
  repo: string
  /** host[:port] of the endpoint: the key for credentials. */
  host: string
}

const MAX_MANIFEST = 4 << 20

export interface RegistryOptions {
  http: HttpOptions
  mirrors: readonly RegistryMirror[]
  credentials: DockerCredentials
}

/**
 * An OCI distribution client written for this project: bearer-token and basic challenges
 * (anonymous or with docker credentials), mirrors, manifests checked against their digest,
 * blobs streamed through the verified, resumable download of http.ts. Tokens are kept per
 * endpoint and repository; a 401 on a later request fetches a fresh one.
 */
export class RegistryClient {
  private auth = new Map<string, string>()

  constructor(private readonly o: RegistryOptions) {}

  endpoint(ref: ImageRef): Endpoint {
    // A mirror for this very repository wins over one for the whole registry.
    const exact = this.o.mirrors.find((m) => m.host === ref.registry && m.repository === ref.repository)
    if (exact) return { base: exact.url.origin, repo: exact.url.pathname.replace(/^\/+|\/+$/g, ''), host: exact.url.host }
    const mirror = this.o.mirrors.find((m) => m.host === ref.registry && !m.repository)
    if (mirror) {
      const prefix = mirror.url.pathname.replace(/^\/+|\/+$/g, '')
      return { base: mirror.url.origin, repo: prefix ? `${prefix}/${ref.repository}` : ref.repository, host: mirror.url.host }
    }
    const host = ref.registry === 'docker.io' ? 'registry-1.docker.io' : ref.registry
    return { base: `https://${host}`, repo: ref.repository, host }
  }

  /** What a tag (or digest) points to now: the digest of the index or manifest. */
  async resolve(ref: ImageRef): Promise<{ digest: Sha256; mediaType: string; data: Buffer }> {
    return this.manifest(ref, ref.tag ?? ref.digest!.oci)
  }

  /**
   * GETs a manifest or index. By digest, the bytes must hash to it; by tag, they must hash
   * to the `Docker-Content-Digest` the registry announces, if it does.
   */
  async manifest(ref: ImageRef, reference: string, expected?: Sha256): Promise<{ digest: Sha256; mediaType: string; data: Buffer }> {
    const ep = this.endpoint(ref)
    const url = `${ep.base}/v2/${ep.repo}/manifests/${reference}`
    const what = imageName(ref)
    return withRetries(what, url, this.o.http, async (_progressed, a) => {
      const res = await request(url, {
        dispatcher: this.o.http.dispatcher,
        method: 'GET',
        headers: { accept: ACCEPT_MANIFESTS, ...this.headers(ep) },
        signal: a.signal,
      })
      if (res.statusCode === 401) {
        await res.body.dump()
        if (await this.authenticate(ep, headerValue(res.headers['www-authenticate']))) throw new Transient('HTTP 401: authenticated')
        throw unauthorized(what, ep)
      }
      if (res.statusCode !== 200) {
        const body = await res.body.text().catch(() => '')
        if (RETRY_STATUS.has(res.statusCode)) throw new Transient(`HTTP ${res.statusCode}`, retryAfterMs(res.headers['retry-after']))
        throw registryError(what, url, res.statusCode, body)
      }
      const chunks: Buffer[] = []
      let size = 0
      for await (const c of res.body) {
        size += (c as Buffer).length
        if (size > MAX_MANIFEST) throw new KaError('EREGISTRY', `${what}: the manifest at ${redactUrl(url)} is larger than ${MAX_MANIFEST} bytes; refusing it`)
        chunks.push(c as Buffer)
      }
      const data = Buffer.concat(chunks)
      const digest = Sha256.of(data)
      const announced = headerValue(res.headers['docker-content-digest'])
      const want = expected ?? (announced?.startsWith('sha256:') ? Sha256.fromOci(announced) : undefined)
      if (want && !digest.equals(want)) throw integrityError(`${what}: manifest ${reference}`, want, digest, { image: what })
      return { digest, mediaType: headerValue(res.headers['content-type']) ?? '', data }
    })
  }

  /** Downloads a blob into `partial` (resuming what is there), verified against its digest. */
  async blob(
    ref: ImageRef,
    digest: Sha256,
    size: number,
    partial: string,
    opts: Pick<DownloadRequest, 'onBytes' | 'signal' | 'urgent' | 'order' | 'onPrefix' | 'onDiscard'> = {},
  ): Promise<Downloaded> {
    const ep = this.endpoint(ref)
    const what = `${imageName(ref)} blob ${digest.hex.slice(0, 12)}`
    return download(
      {
        what,
        url: `${ep.base}/v2/${ep.repo}/blobs/${digest.oci}`,
        partial,
        expected: digest,
        size,
        ...opts,
        headers: async () => this.headers(ep),
        onUnauthorized: (challenge) => this.authenticate(ep, challenge),
        onHttpError: (status, body) => registryError(what, `${ep.base}/v2/${ep.repo}/blobs/${digest.oci}`, status, body),
      },
      this.o.http,
    )
  }

  private headers(ep: Endpoint): Record<string, string> {
    const a = this.auth.get(`${ep.base}|${ep.repo}`)
    return a ? { authorization: a } : {}
  }

  /** Answers a 401 challenge; false when there is nothing new to try. */
  private async authenticate(ep: Endpoint, challenge: string | undefined): Promise<boolean> {
    const key = `${ep.base}|${ep.repo}`
    const before = this.auth.get(key)
    const parsed = parseChallenge(challenge ?? '')
    const cred = await this.o.credentials.get(ep.host)
    const basic = cred ? `Basic ${Buffer.from(`${cred.username}:${cred.password}`).toString('base64')}` : undefined
    if (parsed?.scheme === 'basic') {
      if (!basic || before === basic) return false
      this.auth.set(key, basic)
      return true
    }
    if (parsed?.scheme !== 'bearer' || !parsed.params.realm) return false
    const realm = new URL(parsed.params.realm)
    if (parsed.params.service) realm.searchParams.set('service', parsed.params.service)
    realm.searchParams.set('scope', parsed.params.scope ?? `repository:${ep.repo}:pull`)
    // Asked for inside a request that holds a connection already: it takes none of the budget's.
    const token = await withRetries(`token for ${ep.host}`, realm.toString(), { ...this.o.http, connections: undefined }, async (_progressed, a) => {
      const res = await request(realm.toString(), {
        dispatcher: this.o.http.dispatcher,
        method: 'GET',
        headers: basic ? { authorization: basic } : {},
        signal: a.signal,
      })
      const body = await res.body.text()
      if (RETRY_STATUS.has(res.statusCode)) throw new Transient(`HTTP ${res.statusCode}`, retryAfterMs(res.headers['retry-after']))
      if (res.statusCode !== 200)
        throw new KaError(
          'EREGISTRY',
          `${ep.host}: the token service ${redactUrl(realm.toString())} answered HTTP ${res.statusCode}; ${cred ? 'check the credentials in ~/.docker/config.json' : 'this registry may need credentials: docker login'}`,
          { registryCode: 'UNAUTHORIZED' },
        )
      const t = (JSON.parse(body) as { token?: string; access_token?: string }) ?? {}
      return t.token ?? t.access_token
    })
    if (!token) return false
    const next = `Bearer ${token}`
    this.auth.set(key, next)
    return next !== before || !before
  }
}

/** `Bearer realm="https://auth",service="registry",scope="repository:x:pull"` */
export function parseChallenge(header: string): { scheme: string; params: Record<string, string> } | undefined {
  const m = /^\s*(\w+)\s*(.*)$/.exec(header)
  if (!m?.[1]) return undefined
  const params: Record<string, string> = {}
  for (const p of (m[2] ?? '').matchAll(/(\w+)=(?:"([^"]*)"|([^,\s]*))/g)) params[p[1]!.toLowerCase()] = p[2] ?? p[3] ?? ''
  return { scheme: m[1].toLowerCase(), params }
}

const unauthorized = (what: string, ep: Endpoint): KaError =>
  new KaError('EREGISTRY', `${what}: UNAUTHORIZED at ${ep.base}; log in (docker login ${ep.host}) or check ~/.docker/config.json`, {
    registryCode: 'UNAUTHORIZED',
  })

/** An error from the registry's JSON error body, carrying its OCI code (MANIFEST_UNKNOWN, ...). */
export function registryError(what: string, url: string, status: number, body: string): KaError {
  let code = status === 404 ? 'NOT_FOUND' : `HTTP_${status}`
  let message = ''
  try {
    const e = (JSON.parse(body) as { errors?: { code?: string; message?: string }[] }).errors?.[0]
    if (e?.code) code = e.code
    if (e?.message) message = e.message
  } catch {
    // not JSON: the status says it all
  }
  const hint =
    code === 'MANIFEST_UNKNOWN' || code === 'NAME_UNKNOWN' || status === 404
      ? 'check the image name and tag, and --registry-mirror'
      : code === 'DENIED' || code === 'UNAUTHORIZED'
        ? 'check the credentials in ~/.docker/config.json'
        : 'try again later or use --registry-mirror'
  return new KaError('EREGISTRY', `${what}: ${code}${message ? ` (${message})` : ''} from ${redactUrl(url)} (HTTP ${status}); ${hint}`, {
    registryCode: code,
    status,
    url: redactUrl(url),
  })
}
