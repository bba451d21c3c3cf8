/**
 * RPM repodata: packages as primary.xml lists them, and the closure of what a node needs
 * beyond what every minimal installation of its release has (in rpm's version order).
 */
import { compareEvr } from '../../bundle/rpm-version.js'

/** One Requires or Provides entry: a name (a package, a virtual name, a soname, a file) and maybe a version range. */
export interface RpmDep {
  name: string
  flags?: 'EQ' | 'LT' | 'LE' | 'GT' | 'GE'
  /** epoch:version-release as far as the entry gives it. */
  evr?: string
}

export interface RpmPackage {
  name: string
  arch: string
  /** [epoch:]version-release, as rpm prints it. */
  evr: string
  sha256: string
  size: number
  /** The .rpm's path under the repository (location href). */
  href: string
  provides: RpmDep[]
  requires: RpmDep[]
  /** The files primary.xml lists (those under /etc and the bin folders): what a file requirement names. */
  files: string[]
  /** The repository's folder, which href is relative to. */
  repo: string
}

const ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" }
const xmlText = (s: string): string => s.replace(/&(amp|lt|gt|quot|apos);/g, (_, e: string) => ENTITIES[e]!)

const attrs = (text: string): Record<string, string> => {
  const out: Record<string, string> = {}
  for (const m of text.matchAll(/([\w:]+)="([^"]*)"/g)) out[m[1]!] = xmlText(m[2]!)
  return out
}

const evrOf = (a: Record<string, string>): string | undefined => {
  if (a.ver === undefined) return undefined
  const epoch = a.epoch && a.epoch !== '0' ? `${a.epoch}:` : ''
  return `${epoch}${a.ver}${a.rel ? `-${a.rel}` : ''}`
}

const deps = (block: string, tag: 'provides' | 'requires'): RpmDep[] => {
  const section = new RegExp(`<rpm:${tag}>([\\s\\S]*?)</rpm:${tag}>`).exec(block)?.[1] ?? ''
  return [...section.matchAll(/<rpm:entry ([^>]*?)\/>/g)].map((m) => {
    const a = attrs(m[1]!)
    const evr = evrOf(a)
    return { name: a.name!, ...(a.flags ? { flags: a.flags as RpmDep['flags'] } : {}), ...(evr ? { evr } : {}) }
  })
}

/**
 * One `<package type="rpm">` block of primary.xml; undefined for a block that is not a
 * binary package with a sha256. The caller splits the stream at `</package>`, so the
 * whole file is never in memory at once.
 */
export function parsePrimaryPackage(block: string, repo: string): RpmPackage | undefined {
  const text = (tag: string) => {
    const m = new RegExp(`<${tag}>([^<]*)</${tag}>`).exec(block)
    return m ? xmlText(m[1]!) : undefined
  }
  const name = text('name')
  const arch = text('arch')
  const version = /<version ([^>]*?)\/>/.exec(block)
  const checksum = /<checksum type="sha256"[^>]*>([0-9a-f]{64})<\/checksum>/.exec(block)
  const location = /<location ([^>]*?)\/>/.exec(block)
  if (!name || !arch || !version || !checksum || !location || arch === 'src') return undefined
  const loc = attrs(location[1]!)
  const base = loc['xml:base']?.replace(/\/$/, '')
  return {
    name,
    arch,
    evr: evrOf(attrs(version[1]!))!,
    sha256: checksum[1]!,
    size: Number(/<size package="(\d+)"/.exec(block)?.[1] ?? 0),
    href: loc.href!,
    provides: deps(block, 'provides'),
    requires: deps(block, 'requires'),
    files: [...block.matchAll(/<file(?: type="[^"]*")?>([^<]*)<\/file>/g)].map((m) => xmlText(m[1]!)),
    repo: base ?? repo,
  }
}

/** The mandatory packages of comps' `core` group: what every minimal installation has. */
export function coreGroup(comps: string): string[] {
  const group = [...comps.matchAll(/<group>([\s\S]*?)<\/group>/g)].map((m) => m[1]!).find((g) => /<id>core<\/id>/.test(g))
  if (!group) return []
  return [...group.matchAll(/<packagereq([^>]*)>([^<]+)<\/packagereq>/g)]
    .filter((m) => !/type="(optional|conditional|default)"/.test(m[1]!))
    .map((m) => m[2]!.trim())
}

/** Whether a provide meets a requirement: same name, and the provide's version inside the requirement's range. */
function meets(p: RpmDep, r: RpmDep): boolean {
  if (p.name !== r.name) return false
  if (!r.flags || !r.evr || !p.evr) return true
  const c = compareEvr(p.evr, r.evr)
  return { EQ: c === 0, LT: c < 0, LE: c <= 0, GT: c > 0, GE: c >= 0 }[r.flags]
}

const show = (d: RpmDep) => (d.flags && d.evr ? `${d.name} ${{ EQ: '=', LT: '<', LE: '<=', GT: '>', GE: '>=' }[d.flags]} ${d.evr}` : d.name)

/**
 * What a repository's modules.yaml lets dnf see on a fresh node: of each module with a
 * default stream (a modulemd-defaults document), the packages of that stream's newest
 * version for this architecture (`visible`, as name-epoch:version-release.arch), and the
 * names they hide from the same repositories' non-modular packages (dnf's modular filtering).
 */
export interface DefaultStreams {
  visible: Set<string>
  names: Set<string>
}

interface ModuleDoc {
  document?: string
  data?: {
    name?: string
    module?: string
    stream?: string | number
    version?: number
    arch?: string
    artifacts?: { rpms?: string[] }
  }
}

export function defaultStreams(docs: readonly unknown[], arch: string): DefaultStreams {
  const all = docs.filter((d): d is ModuleDoc => typeof d === 'object' && d !== null)
  const defaults = new Map(
    all
      .filter((d) => d.document === 'modulemd-defaults' && d.data?.module && d.data.stream !== undefined)
      .map((d) => [d.data!.module!, String(d.data!.stream)]),
  )
  const newest = new Map<string, ModuleDoc[]>()
  for (const d of all) {
    const m = d.data
    if (d.document !== 'modulemd' || !m?.name || defaults.get(m.name) !== String(m.stream) || (m.arch !== arch && m.arch !== 'noarch')) continue
    const have = newest.get(m.name)?.[0]?.data?.version ?? -1
    if ((m.version ?? 0) > have) newest.set(m.name, [d])
    else if ((m.version ?? 0) === have) newest.get(m.name)!.push(d)
  }
  const visible = new Set([...newest.values()].flat().flatMap((d) => d.data?.artifacts?.rpms ?? []))
  const names = new Set([...visible].map((nevra) => nevra.replace(/-[^-]+-[^-]+$/, '')))
  return { visible, names }
}

/** A package as modules.yaml names it: name-epoch:version-release.arch. */
const nevra = (p: RpmPackage) => `${p.name}-${p.evr.includes(':') ? p.evr : `0:${p.evr}`}.${p.arch}`

/**
 * The newest of each package name for one architecture (and noarch), across repositories.
 * A module's packages are hidden from dnf until their stream is enabled, unless it is the
 * module's default stream; then they hide the non-modular packages of the same name.
 */
export function newestRpms(repos: RpmPackage[][], arch: string, streams: DefaultStreams = { visible: new Set(), names: new Set() }): Map<string, RpmPackage> {
  const by = new Map<string, RpmPackage>()
  for (const repo of repos)
    for (const p of repo) {
      if (p.arch !== arch && p.arch !== 'noarch') continue
      if (/\.module[+_]/.test(p.evr) ? !streams.visible.has(nevra(p)) : streams.names.has(p.name)) continue
      const have = by.get(p.name)
      if (!have || compareEvr(p.evr, have.evr) > 0) by.set(p.name, p)
    }
  return by
}

/** A rich dependency (`(a or b)`, `(a if b)`) as the resolver handles it; others are named. */
type Requirement = { any: RpmDep[] } | { need: RpmDep; when: RpmDep }

const simple = (text: string): RpmDep => {
  const m = /^(\S+)\s*(<=|>=|=|<|>)\s*(\S+)$/.exec(text.trim())
  if (!m) return { name: text.trim() }
  const flags = ({ '=': 'EQ', '<': 'LT', '<=': 'LE', '>': 'GT', '>=': 'GE' } as const)[m[2] as '=' | '<' | '<=' | '>' | '>=']
  return { name: m[1]!, flags, evr: m[3]! }
}

function requirement(d: RpmDep, by: string): Requirement {
  if (!d.name.startsWith('(')) return { any: [d] }
  const inner = d.name.slice(1, -1)
  if (!inner.includes('(')) {
    const ors = inner.split(/\s+or\s+/)
    if (ors.length > 1 && ors.every((o) => !/\s(and|if|else|with|without|unless)\s/.test(o))) return { any: ors.map(simple) }
    const cond = /^(.+?)\s+if\s+(.+)$/.exec(inner)
    if (cond && !/\s(and|or|else|with|without|unless|if)\s/.test(`${cond[1]} ${cond[2]}`)) return { need: simple(cond[1]!), when: simple(cond[2]!) }
  }
  throw new Error(`${d.name} (needed by ${by}) is a rich dependency the resolver does not handle; list the package it should pick in packages.names`)
}

/**
 * The packages to carry for `wanted` (names, or provides such as `iptables`): each with
 * what it requires, recursively, leaving out what every minimal installation has (the core
 * group's mandatory packages and what they require). A requirement is met by a package
 * name, a virtual or soname provide, or a file; a versioned one only by a provider in
 * range. `rpmlib(...)` is rpm's own. Throws naming the requirement nothing meets.
 */
export function rpmClosure(wanted: readonly string[], all: Map<string, RpmPackage>, core: readonly string[]): RpmPackage[] {
  const byProvide = new Map<string, RpmPackage[]>()
  const add = (key: string, p: RpmPackage) => byProvide.set(key, [...(byProvide.get(key) ?? []), p])
  for (const p of [...all.values()].sort((a, b) => (a.name < b.name ? -1 : 1))) {
    add(p.name, p)
    for (const d of p.provides) if (d.name !== p.name) add(d.name, p)
    for (const f of p.files) add(f, p)
  }
  const providesDep = (p: RpmPackage, d: RpmDep) =>
    d.name.startsWith('/') && p.files.includes(d.name) ? true : [{ name: p.name, flags: 'EQ' as const, evr: p.evr }, ...p.provides].some((x) => meets(x, d))
  const providers = (d: RpmDep) => (byProvide.get(d.name) ?? []).filter((p) => providesDep(p, d))
  const base = new Set<string>()
  const chosen = new Map<string, RpmPackage>()
  const has = (d: RpmDep) => providers(d).some((p) => base.has(p.name) || chosen.has(p.name))

  const walk = (start: RpmPackage[], into: (p: RpmPackage) => boolean, strict: boolean) => {
    const stack = [...start]
    while (stack.length) {
      const p = stack.pop()!
      if (!into(p)) continue
      for (const d of p.requires) {
        if (d.name.startsWith('rpmlib(')) continue
        const r = requirement(d, p.name)
        if ('when' in r) {
          if (!has(r.when) || has(r.need)) continue
          const q = providers(r.need)[0]
          if (!q && !strict) continue
          if (!q) throw new Error(`${show(r.need)} (needed by ${p.name}) is not in the release's repositories`)
          stack.push(q)
          continue
        }
        if (r.any.some(has)) continue
        const q = r.any.map((a) => providers(a)[0]).find(Boolean)
        if (!q && !strict) continue
        if (!q) {
          const other = (byProvide.get(r.any[0]!.name) ?? [])[0]
          const why = other ? `; the repositories have ${other.name} ${other.evr}` : ''
          throw new Error(`${r.any.map(show).join(' or ')} (needed by ${p.name}) is not in the release's repositories${why}`)
        }
        stack.push(q)
      }
    }
  }
  // What every minimal installation has; a core package a repository lacks is simply not there.
  walk(
    core.map((n) => all.get(n)).filter((p): p is RpmPackage => p !== undefined),
    (p) => !base.has(p.name) && Boolean(base.add(p.name)),
    false,
  )
  const choose = (q: RpmPackage) => !base.has(q.name) && !chosen.has(q.name) && Boolean(chosen.set(q.name, q))
  for (const w of wanted) {
    const p = all.get(w) ?? providers({ name: w })[0]
    if (!p) throw new Error(`${w} is not in the release's repositories (no package and no provide of that name)`)
    walk([p], choose, true)
  }
  // `(a if b)` met whatever the order: b may be chosen after the package that names it (as
  // libsolv weighs the whole transaction). Again until nothing more is chosen.
  for (let size = -1; size !== chosen.size; ) {
    size = chosen.size
    walk([...chosen.values()], (q) => q === chosen.get(q.name) || choose(q), true)
  }
  return [...chosen.values()].sort((a, b) => (a.name < b.name ? -1 : 1))
}
