import { readFile } from 'node:fs/promises'
import { KaError } from '../bundle/errors.js'
import { loadYaml } from '../bundle/yaml.js'
import { applyMirrors, type HttpOptions, type Mirror, parseMirror, redactUrl, request } from './download/http.js'
import { parseRegistryMirror, type RegistryMirror } from './images/registry.js'

/** The environment variable that names a mirrors file, for every run (--mirrors wins). */
export const MIRRORS_ENV = 'KUBE_AIRGAP_MIRRORS'

/**
 * A mirrors file: every `--mirror` and `--registry-mirror` of a site in one place, so a user
 * behind a firewall gives one switch, not six flags on every run.
 *
 *   files:                      # URL prefix: the mirror's prefix (as --mirror FROM=TO)
 *     https://dl.k8s.io: https://mirror.example/dl.k8s.io
 *   registries:                 # registry host, or host/repository: URL (as --registry-mirror)
 *     registry.k8s.io: https://registry.example/google_containers
 *     registry.k8s.io/coredns/coredns: https://registry.example/google_containers/coredns
 *
 * Flags given on the command line come first (the first match wins).
 */
export async function readMirrorsFile(path: string): Promise<{ mirrors: Mirror[]; registryMirrors: RegistryMirror[] }> {
  const text = await readFile(path, 'utf8').catch(() => {
    throw new KaError('EUSAGE', `--mirrors ${path}: cannot read it; give a mirrors file (see manifests/mirrors/)`)
  })
  const doc = loadYaml(text, path) as { files?: unknown; registries?: unknown } | null
  const map = (key: 'files' | 'registries'): [string, string][] => {
    const v = doc?.[key]
    if (v === undefined || v === null) return []
    if (typeof v !== 'object' || Array.isArray(v)) throw new KaError('EUSAGE', `${path}: ${key} must be a mapping of FROM: TO`)
    return Object.entries(v).map(([from, to]) => {
      if (typeof to !== 'string') throw new KaError('EUSAGE', `${path}: ${key}.${from} must be a URL`)
      return [from, to]
    })
  }
  for (const key of Object.keys(doc ?? {}))
    if (key !== 'files' && key !== 'registries')
      throw new KaError('EUSAGE', `${path}: unknown key ${JSON.stringify(key)} (a mirrors file has files and registries)`)
  return {
    mirrors: map('files').map(([from, to]) => parseMirror(`${from}=${to}`)),
    registryMirrors: map('registries').map(([from, to]) => parseRegistryMirror(`${from}=${to}`)),
  }
}

/** Flags first, then the file (--mirrors, else $KUBE_AIRGAP_MIRRORS). */
export async function resolveMirrors(
  flags: { mirror: string[]; registryMirror: string[]; mirrors?: string },
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ mirrors: Mirror[]; registryMirrors: RegistryMirror[] }> {
  const file = flags.mirrors ?? (env[MIRRORS_ENV] || undefined)
  const fromFile = file ? await readMirrorsFile(file) : { mirrors: [], registryMirrors: [] }
  return {
    mirrors: [...flags.mirror.map(parseMirror), ...fromFile.mirrors],
    registryMirrors: [...flags.registryMirror.map(parseRegistryMirror), ...fromFile.registryMirrors],
  }
}

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
export async function checkHosts(hosts: Map<string, string>, http: HttpOptions, timeoutMs = 15_000): Promise<void> {
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
      `${failed.length} of ${hosts.size} hosts the lock needs cannot be reached: ${failed.sort().join(', ')}; check the network and the proxy (HTTPS_PROXY), or give mirrors for them (--mirrors FILE; manifests/mirrors/china.yaml for users in China)`,
      { unreachable: failed },
    )
  }
}
