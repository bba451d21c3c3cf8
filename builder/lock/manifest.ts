import { readFile } from 'node:fs/promises'
import { loadYaml } from '../../bundle/yaml.js'
import { Sha256 } from '../../bundle/digest.js'
import { KaError } from '../../bundle/errors.js'
import { urlProblem } from '../../bundle/lock.js'
import { PLATFORMS, type Platform } from '../../bundle/platform.js'
import { type ImageRef, imageName, parseImageRef } from '../../bundle/reference.js'
import { didYouMean } from '../../bundle/text.js'
import { COMPONENTS } from './components.js'
import { C, CNI_MANIFEST, type Cni } from '../../bundle/components.js'
import { RELEASES } from '../packages/releases.js'

/** An extra file the user wants in the bundle. `{arch}` in the URL makes it per platform. */
export interface ExtraFile {
  name: string
  version: string
  url: string
  sha256?: Sha256
}

export interface ImageWant {
  ref: string
  digest?: Sha256
}

/** What the user asks for (human-edited YAML); `bundle lock` turns it into a lock. */
export interface Manifest {
  kubernetes: string
  /** The pod network the bundle installs (`cni:`, Calico unless it says flannel). */
  cni: Cni
  platforms: Platform[]
  components: Map<string, string>
  images: ImageWant[]
  files: ExtraFile[]
  /**
   * OS packages to carry: for the nodes, each release for every platform of the manifest or
   * only those it names; for the machine that runs the fleet playbook (`controller`), its own
   * names for its releases (the nodes' when it names none).
   */
  packages: { releases: PackageRelease[]; names: string[]; controller?: { releases: PackageRelease[]; names: string[] } }
}

export interface PackageRelease {
  id: string
  platforms?: Platform[]
}

const TOP_KEYS = ['kubernetes', 'cni', 'platforms', 'components', 'images', 'files', 'packages']

export async function readManifest(path: string): Promise<Manifest> {
  const text = await readFile(path, 'utf8').catch(() => {
    throw new KaError('EUSAGE', `${path}: cannot read the manifest; give one with --manifest`)
  })
  return parseManifest(text, path)
}

type Fail = (field: string, problem: string) => never

export function parseManifest(text: string, source: string): Manifest {
  const fail: Fail = (field, problem) => {
    throw new KaError('ELOCK', `${source}: ${field}: ${problem}`, { field })
  }
  const raw = loadYaml(text, source, 'ELOCK')
  if (typeof raw !== 'object' || raw === null) return fail('(document)', 'must be a mapping')
  const o = raw as Record<string, unknown>
  for (const k of Object.keys(o)) if (!TOP_KEYS.includes(k)) fail(k, `unknown key${didYouMean(k, TOP_KEYS)}`)

  // A manifest of images alone (an operator's applications, after the cluster is up) names no Kubernetes.
  const onlyImages = ['kubernetes', 'cni', 'components', 'files', 'packages'].every((k) => o[k] === undefined)
  const kubernetes = onlyImages ? '' : String(o.kubernetes ?? '')
  if (!onlyImages && !/^\d+\.\d+\.\d+$/.test(kubernetes)) fail('kubernetes', `must be a version like 1.29.3, found ${JSON.stringify(o.kubernetes)}`)
  if (onlyImages && !(Array.isArray(o.images) && o.images.length)) fail('images', 'must list the images (a manifest of images alone builds an image bundle)')

  if (onlyImages && o.platforms === undefined) o.platforms = [...PLATFORMS]
  if (!Array.isArray(o.platforms) || o.platforms.length === 0) fail('platforms', `must list platforms (${PLATFORMS.join(', ')})`)
  const platforms = (o.platforms as unknown[]).map((p, i) => {
    if (!(PLATFORMS as readonly unknown[]).includes(p)) fail(`platforms[${i}]`, `unknown platform ${JSON.stringify(p)}; use ${PLATFORMS.join(' or ')}`)
    return p as Platform
  })

  const list = (key: string): unknown[] => {
    const v = o[key] ?? []
    return Array.isArray(v) ? v : fail(key, 'must be a list')
  }
  const components = componentsOf(o.components, fail)
  const images = list('images').map((v, i) => imageOf(v, `images[${i}]`, fail))
  // The etcd clients a master backs up and restores with must speak the snapshot format of the etcd it runs.
  const etcdImage = images.map((im) => /^registry\.k8s\.io\/etcd:(\d+\.\d+\.\d+)-\d+$/.exec(im.ref)?.[1]).find(Boolean)
  const etcd = components.get(C.etcd)
  if (etcd && etcdImage && etcd !== etcdImage)
    fail(`components.${C.etcd}`, `is ${etcd}, but the etcd image is ${etcdImage}: give the version of the etcd the cluster runs (${etcdImage})`)
  const cni = onlyImages ? 'calico' : cniOf(o.cni, components, fail)
  return {
    kubernetes,
    cni,
    platforms,
    components,
    images,
    files: list('files').map((v, i) => extraFileOf(v, `files[${i}]`, fail)),
    packages: packagesOf(o.packages, platforms, fail),
  }
}

/** `cni:` and the components agree: the chosen network's manifest, and nothing of the other (one pod network per cluster). */
function cniOf(raw: unknown, components: ReadonlyMap<string, string>, fail: Fail): Cni {
  const choices = Object.keys(CNI_MANIFEST) as Cni[]
  const cni = (raw ?? 'calico') as Cni
  if (!choices.includes(cni)) fail('cni', `must be ${choices.join(' or ')}, found ${JSON.stringify(raw)}`)
  if (cni === 'flannel' && !components.has(C.flannelManifest))
    fail('components', `cni is flannel: give ${C.flannelManifest} (the version of its manifest to carry)`)
  const others = [...components.keys()].filter((c) => (cni === 'flannel' ? [C.calicoManifest, C.calicoctl] : [C.flannelManifest]).includes(c as never))
  if (others.length) fail(`components.${others[0]}`, `cni is ${cni}: leave out ${others.join(' and ')} (a cluster runs one pod network)`)
  return cni
}

function componentsOf(raw: unknown, fail: Fail): Map<string, string> {
  const components = new Map<string, string>()
  const known = COMPONENTS.map((c) => c.name)
  const comps = (raw ?? {}) as Record<string, unknown>
  if (typeof comps !== 'object' || Array.isArray(comps)) fail('components', 'must map component names to versions')
  for (const [name, version] of Object.entries(comps)) {
    if (!known.includes(name)) fail(`components.${name}`, `unknown component${didYouMean(name, known)}; known: ${known.join(', ')}`)
    if (version === null || version === undefined || !/^\d+\.\d+\.\d+$/.test(String(version)))
      fail(`components.${name}`, `must be a version like 1.2.3, found ${JSON.stringify(version)}`)
    components.set(name, String(version))
  }
  return components
}

function imageOf(v: unknown, at: string, fail: Fail): ImageWant {
  if (typeof v !== 'string') return fail(at, 'must be a reference string such as registry.k8s.io/pause:3.9')
  let parsed: ImageRef
  try {
    parsed = parseImageRef(v)
  } catch (e) {
    return fail(at, (e as Error).message)
  }
  // Stored canonical (docker.io/library/..., a tag always), as the node will name it.
  const ref = imageName(parsed)
  return parsed.digest ? { ref, digest: parsed.digest } : { ref }
}

function extraFileOf(v: unknown, at: string, fail: Fail): ExtraFile {
  const f = v as Record<string, unknown>
  if (typeof f !== 'object' || f === null) return fail(`${at}`, 'must be a mapping with name, version, url')
  for (const k of ['name', 'version', 'url']) if (typeof f[k] !== 'string' && typeof f[k] !== 'number') fail(`${at}.${k}`, 'missing')
  const out: ExtraFile = { name: String(f.name), version: String(f.version), url: String(f.url) }
  const bad = urlProblem(out.url)
  if (bad) fail(`${at}.url`, bad)
  if (/[\u0000-\u001f\u007f-\u009f]/.test(out.name + out.version)) fail(`${at}`, 'name and version must be printable text')
  if (f.sha256 !== undefined) {
    try {
      out.sha256 = Sha256.fromHex(String(f.sha256))
    } catch {
      fail(`${at}.sha256`, 'must be 64 hex digits')
    }
  }
  return out
}

/** The OS packages: which releases (each for every platform, or for some), which package names, and the controller's. */
function packagesOf(raw: unknown, platforms: readonly Platform[], fail: Fail): Manifest['packages'] {
  const pk = (raw ?? { releases: [], names: [] }) as { releases?: unknown; names?: unknown; controller?: unknown }
  if (typeof pk !== 'object' || pk === null || Array.isArray(pk)) fail('packages', 'must be a mapping with releases and names')
  for (const k of Object.keys(pk))
    if (!['releases', 'names', 'controller'].includes(k)) fail(`packages.${k}`, `unknown key${didYouMean(k, ['releases', 'names', 'controller'])}`)
  const releases = releasesOf(pk.releases, 'packages.releases', platforms, fail)
  const names = namesOf(pk.names, 'packages.names', fail)
  if (pk.controller === undefined) return { releases, names }
  const c = pk.controller as { releases?: unknown; names?: unknown }
  if (typeof c !== 'object' || c === null || Array.isArray(c))
    fail('packages.controller', 'must be a mapping with names (and releases, when the controller runs a release the nodes do not)')
  for (const k of Object.keys(c)) if (!['releases', 'names'].includes(k)) fail(`packages.controller.${k}`, `unknown key${didYouMean(k, ['releases', 'names'])}`)
  const controller = {
    releases: c.releases === undefined ? releases : releasesOf(c.releases, 'packages.controller.releases', platforms, fail),
    names: namesOf(c.names, 'packages.controller.names', fail),
  }
  if (!controller.names.length) fail('packages.controller.names', 'must name the packages, for example [ansible-core, sshpass]')
  if (!controller.releases.length) fail('packages.controller.releases', "must list the controller's releases (the nodes list none)")
  return { releases, names, controller }
}

/** A release is a name (every platform) or { release, platforms } (only those: an archive that does not serve, or cannot be reached for, every architecture). */
function releasesOf(raw: unknown, at: string, platforms: readonly Platform[], fail: Fail): PackageRelease[] {
  const knownReleases = RELEASES.map((r) => r.id)
  if (!Array.isArray(raw)) fail(at, `must list releases (${knownReleases.join(', ')})`)
  return (raw as unknown[]).map((e, i) => {
    const entry = typeof e === 'string' ? { release: e } : (e as { release?: unknown; platforms?: unknown })
    const id = entry?.release
    if (typeof id !== 'string') return fail(`${at}[${i}]`, 'must be a release name or { release: NAME, platforms: [...] }')
    if (!knownReleases.includes(id))
      fail(
        `${at}[${i}]`,
        `unknown release ${JSON.stringify(id)}${didYouMean(id, knownReleases)}; known: ${knownReleases.join(', ')} (builder/packages/releases.ts says how to add one)`,
      )
    if (entry.platforms === undefined) return { id }
    if (!Array.isArray(entry.platforms) || !entry.platforms.every((p) => platforms.includes(p as Platform)))
      fail(`${at}[${i}].platforms`, `must list platforms of the manifest (${platforms.join(', ')})`)
    return { id, platforms: entry.platforms as Platform[] }
  })
}

const namesOf = (raw: unknown, at: string, fail: Fail): string[] => (Array.isArray(raw) ? raw.map(String) : fail(at, 'must list package names'))
