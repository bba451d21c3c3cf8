import { readFile } from 'node:fs/promises'
import { KaError } from '../bundle/errors.js'
import { loadYaml } from '../bundle/yaml.js'
import { type Mirror, parseMirror } from './download/http.js'
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
): Promise<{ mirrors: Mirror[]; registryMirrors: RegistryMirror[]; mirrorsFile?: string }> {
  const file = flags.mirrors ?? (env[MIRRORS_ENV] || undefined)
  const fromFile = file ? await readMirrorsFile(file) : { mirrors: [], registryMirrors: [] }
  return {
    mirrors: [...flags.mirror.map(parseMirror), ...fromFile.mirrors],
    registryMirrors: [...flags.registryMirror.map(parseRegistryMirror), ...fromFile.registryMirrors],
    ...(file ? { mirrorsFile: file } : {}),
  }
}
