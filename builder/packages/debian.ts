/**
 * Debian package indexes: stanzas, version order (dpkg's), and the closure of what a node
 * needs beyond what every installation of its release already has.
 */
export interface DebPackage {
  name: string
  version: string
  priority: string
  essential: boolean
  /** Depends and Pre-Depends together: what the closure follows. */
  depends: string
  /** Pre-Depends alone: what must be configured before this one is unpacked. */
  preDepends: string
  filename: string
  sha256: string
  size: number
  provides: string[]
  /** The archive the index came from: Filename is relative to it. */
  archive: string
}

export function parsePackages(text: string, archive = ''): DebPackage[] {
  const out: DebPackage[] = []
  for (const block of text.split(/\n\s*\n/)) {
    const f: Record<string, string> = {}
    let last = ''
    for (const line of block.split('\n')) {
      if (/^\s/.test(line) && last) f[last] += `\n${line}`
      else {
        const i = line.indexOf(':')
        if (i > 0) {
          last = line.slice(0, i).toLowerCase()
          f[last] = line.slice(i + 1).trim()
        }
      }
    }
    if (!f.package || !f.version || !f.filename || !f.sha256) continue
    out.push({
      name: f.package,
      version: f.version,
      priority: f.priority ?? 'optional',
      essential: f.essential === 'yes',
      depends: [f['pre-depends'], f.depends].filter(Boolean).join(', '),
      preDepends: f['pre-depends'] ?? '',
      filename: f.filename,
      sha256: f.sha256,
      size: Number(f.size ?? 0),
      provides: (f.provides ?? '')
        .split(',')
        .map((p) => p.trim().split(/\s/)[0]!)
        .filter(Boolean),
      archive,
    })
  }
  return out
}

/** dpkg's version order: epoch, then upstream and revision compared the Debian way (~ sorts first). */
export function compareVersions(a: string, b: string): number {
  const split = (v: string): [number, string, string] => {
    const colon = v.indexOf(':')
    const epoch = colon >= 0 ? Number(v.slice(0, colon)) : 0
    const rest = colon >= 0 ? v.slice(colon + 1) : v
    const dash = rest.lastIndexOf('-')
    return dash >= 0 ? [epoch, rest.slice(0, dash), rest.slice(dash + 1)] : [epoch, rest, '']
  }
  const [ea, ua, ra] = split(a)
  const [eb, ub, rb] = split(b)
  return ea !== eb ? ea - eb : comparePart(ua, ub) || comparePart(ra, rb)
}

function order(c: string | undefined): number {
  if (c === undefined) return 0
  if (c === '~') return -1
  if (/[0-9]/.test(c)) return 0
  if (/[A-Za-z]/.test(c)) return c.charCodeAt(0)
  return c.charCodeAt(0) + 256
}

function comparePart(a: string, b: string): number {
  let i = 0
  let j = 0
  while (i < a.length || j < b.length) {
    while ((i < a.length && !/[0-9]/.test(a[i]!)) || (j < b.length && !/[0-9]/.test(b[j]!))) {
      const d = order(/[0-9]/.test(a[i] ?? '0') ? undefined : a[i]) - order(/[0-9]/.test(b[j] ?? '0') ? undefined : b[j])
      if (d) return d
      i++
      j++
    }
    let na = ''
    let nb = ''
    while (i < a.length && /[0-9]/.test(a[i]!)) na += a[i++]
    while (j < b.length && /[0-9]/.test(b[j]!)) nb += b[j++]
    const d = Number(na || 0) - Number(nb || 0)
    if (d) return d
  }
  return 0
}

/** The newest version of each package across indexes (a later suite may update an earlier one). */
export function newest(indexes: DebPackage[][]): Map<string, DebPackage> {
  const by = new Map<string, DebPackage>()
  for (const idx of indexes)
    for (const p of idx) {
      const have = by.get(p.name)
      if (!have || compareVersions(p.version, have.version) > 0) by.set(p.name, p)
    }
  return by
}

/** A dependency field's groups, each its alternatives' names (`a (>= 1) | b:any` is [a, b]). */
const groups = (field: string): string[][] =>
  field
    .split(',')
    .map((g) => g.trim())
    .filter(Boolean)
    .map((g) => g.split('|').map((a) => a.trim().split(/[\s(:]/)[0]!))

/**
 * The order a set installs in, as apt orders dpkg: dpkg unpacks a package only once its
 * Pre-Depends are configured, and configures it only once its Depends are, so the set goes
 * in stages, one `dpkg --install` each. A package's stage is at least its dependencies' and
 * one more than its pre-dependencies' (within the set: the rest every installation has).
 * Throws on a pre-dependency cycle, which no order installs.
 */
export function installStages(chosen: readonly DebPackage[]): Map<string, number> {
  const byName = new Map<string, DebPackage>()
  for (const p of chosen) for (const n of [p.name, ...p.provides]) if (!byName.has(n) || n === p.name) byName.set(n, p)
  const within = (field: string) => groups(field).flatMap((alts) => alts.map((a) => byName.get(a)).find(Boolean) ?? [])
  const edges = chosen.map((p) => ({ p, deps: within(p.depends), pre: new Set(within(p.preDepends)) }))
  const stage = new Map(chosen.map((p) => [p.name, 0]))
  for (let round = 0; ; round++) {
    const changed: string[] = []
    for (const { p, deps, pre } of edges) {
      const s = Math.max(0, ...deps.filter((d) => d !== p).map((d) => stage.get(d.name)! + (pre.has(d) ? 1 : 0)))
      if (s > stage.get(p.name)!) {
        stage.set(p.name, s)
        changed.push(p.name)
      }
    }
    if (!changed.length) return stage
    if (round > chosen.length) throw new Error(`a pre-dependency cycle among ${changed.join(', ')}: no order installs them`)
  }
}

/**
 * Roots of what every installation has: Essential and priority `required`. Not `important`:
 * minimal images and `debootstrap --variant=minbase` roots lack those, and carrying a
 * package the node already has costs only its size (the installer skips it).
 */
const isBaseRoot = (p: DebPackage) => p.essential || p.priority === 'required'

/**
 * The packages to carry for `wanted`: each with its dependencies, recursively, leaving out
 * what every installation has. An alternative (`a | b`) is
 * satisfied by the first that is base or available; virtual packages by a provider.
 * Version constraints are not solved: one release has one version of each package.
 * Throws naming the package whose dependency the index lacks.
 */
export function closure(wanted: readonly string[], all: Map<string, DebPackage>): DebPackage[] {
  const providers = new Map<string, DebPackage[]>()
  for (const p of all.values()) for (const v of p.provides) providers.set(v, [...(providers.get(v) ?? []), p])
  // A virtual package is the provider every installation has, when one does (bookworm's
  // base-files pre-depends on awk: mawk, required, not gawk, which the index names first).
  const pick = (name: string): DebPackage | undefined => all.get(name) ?? providers.get(name)?.find(isBaseRoot) ?? providers.get(name)?.[0]
  const deps = (p: DebPackage) => groups(p.depends)
  // What every installation has: the required and Essential packages and all they depend
  // on (libc6 is "optional" in bookworm's index, yet always there). Where a dependency has
  // alternatives, or is virtual, the installation has one of them, and not always the first
  // (debootstrap gives bookworm usr-is-merged, not init-system-helpers' first choice usrmerge,
  // which needs perl): only an alternative that is itself required or Essential is counted; of
  // the others none is, and the closure carries what it needs.
  const base = new Set<string>()
  const stack = [...all.values()].filter(isBaseRoot)
  // A name is its package, or a virtual one's required or Essential provider, if it has one.
  const sure = (name: string): DebPackage | undefined => all.get(name) ?? providers.get(name)?.find(isBaseRoot)
  while (stack.length) {
    const p = stack.pop()!
    if (base.has(p.name)) continue
    base.add(p.name)
    for (const alts of deps(p)) {
      const q = alts.length === 1 ? sure(alts[0]!) : alts.map(sure).find((a) => a && isBaseRoot(a))
      if (q && !base.has(q.name)) stack.push(q)
    }
  }
  const isBase = (p: DebPackage) => base.has(p.name)
  const chosen = new Map<string, DebPackage>()
  const visit = (name: string, neededBy: string): void => {
    const p = pick(name)
    if (!p) throw new Error(`${name}${neededBy ? ` (needed by ${neededBy})` : ''} is not in the release's package index`)
    if (chosen.has(p.name) || isBase(p)) return
    chosen.set(p.name, p)
    for (const alts of deps(p)) {
      if (alts.some((a) => chosen.has(a) || (pick(a) && isBase(pick(a)!)))) continue
      const first = alts.find((a) => pick(a))
      if (!first) throw new Error(`${alts.join(' | ')} (needed by ${p.name}) is not in the release's package index`)
      visit(first, p.name)
    }
  }
  for (const w of wanted) visit(w, '')
  return [...chosen.values()].sort((a, b) => (a.name < b.name ? -1 : 1))
}
