import { C } from './components.js'
import { KaError } from './errors.js'
import { loadYaml } from './yaml.js'

/** manifests/compatibility.yaml, read: which versions fit together, each section with its source. */
export interface Compatibility {
  sources: Record<string, string>
  /** Kubernetes minor -> containerd versions recommended (minor.patch at least). */
  containerd: Record<string, string[]>
  /** Calico minor -> [first, last] Kubernetes minor it is tested on. */
  calico: Record<string, [string, string]>
  /** containerd minor -> the oldest runc / CNI plugins. */
  runc: Record<string, string>
  cniPlugins: Record<string, string>
}

export function parseCompatibility(text: string, source: string): Compatibility {
  const o = loadYaml(text, source, 'ELOCK') as Record<string, Record<string, unknown>>
  const strings = (v: unknown) => (Array.isArray(v) ? v.map(String) : [String(v)])
  const map = <T>(key: string, f: (v: unknown) => T): Record<string, T> => Object.fromEntries(Object.entries(o[key] ?? {}).map(([k, v]) => [String(k), f(v)]))
  return {
    sources: map('sources', String),
    containerd: map('containerd', strings),
    calico: map('calico', (v) => strings(v) as [string, string]),
    runc: map('runc', String),
    cniPlugins: map('cni-plugins', String),
  }
}

const parts = (v: string) => v.split(/[.-]/).map((x) => Number.parseInt(x, 10) || 0)
const minorOf = (v: string) => v.split('.').slice(0, 2).join('.')
/** a < b, by numbers (1.10 after 1.9). */
export const older = (a: string, b: string): boolean => {
  const [x, y] = [parts(a), parts(b)]
  for (let i = 0; i < Math.max(x.length, y.length); i++) if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) < (y[i] ?? 0)
  return false
}

/** One rule broken: what, the fix, the source. */
export interface Misfit {
  problem: string
  fix: string
  source: string
}

/**
 * Every rule `components` (name -> version; Kubernetes under `kubernetes`) break. `unknown`
 * collects what the table cannot judge (a minor with no row), for a note.
 */
export function misfits(t: Compatibility, components: ReadonlyMap<string, string>, unknown: string[] = []): Misfit[] {
  const out: Misfit[] = []
  const k8s = components.get('kubernetes')
  const containerd = components.get(C.containerd)
  const calico = components.get(C.calicoManifest) ?? components.get(C.calicoctl)
  const crictl = components.get(C.crictl)
  if (k8s) {
    const km = minorOf(k8s)
    const allowed = t.containerd[km]
    if (!allowed) unknown.push(`Kubernetes ${km} (no containerd row)`)
    else if (containerd && !allowed.some((a) => minorOf(a) === minorOf(containerd) && !older(containerd, a)))
      out.push({
        problem: `containerd ${containerd} is not recommended for Kubernetes ${km}`,
        fix: `give containerd (and containerd-service) one of ${allowed.map((a) => `${a}+`).join(', ')}`,
        source: t.sources.containerd ?? 'manifests/compatibility.yaml',
      })
    if (calico) {
      const range = t.calico[minorOf(calico)]
      if (!range) unknown.push(`Calico ${minorOf(calico)}`)
      else if (older(km, range[0]) || older(range[1], km)) {
        const fits = Object.entries(t.calico)
          .filter(([, [a, b]]) => !older(km, a) && !older(b, km))
          .map(([c]) => c)
        out.push({
          problem: `Calico ${calico} does not support Kubernetes ${km} (it is tested on ${range[0]} to ${range[1]})`,
          fix: fits.length ? `give calico-manifest and calicoctl ${fits.join(' or ')}` : 'no Calico in the table supports it yet',
          source: t.sources.calico ?? 'manifests/compatibility.yaml',
        })
      }
    }
    if (crictl && minorOf(crictl) !== km)
      out.push({ problem: `crictl ${crictl} is not Kubernetes ${km}'s`, fix: `give crictl ${km}.0 (or a later ${km} patch)`, source: t.sources.crictl ?? '' })
  }
  if (containerd) {
    const cm = minorOf(containerd)
    for (const [name, table] of [
      [C.runc, t.runc],
      [C.cniPlugins, t.cniPlugins],
    ] as const) {
      const v = components.get(name)
      const min = table[cm]
      if (!min) {
        if (v) unknown.push(`containerd ${cm} (no ${name} row)`)
        continue
      }
      if (v && older(v, min))
        out.push({
          problem: `${name} ${v} is older than containerd ${cm} goes with (${min})`,
          fix: `give ${name} ${min} or newer`,
          source: t.sources[name] ?? '',
        })
    }
  }
  return out
}

/** The first misfit as one line: what does not fit, what to change, and where that rule comes from. */
export function misfitError(where: string, m: Misfit[]): KaError {
  const [first] = m
  return new KaError('ELOCK', `${where}: ${first!.problem}: ${first!.fix} (source: ${first!.source})${m.length > 1 ? `; and ${m.length - 1} more` : ''}`, {
    misfits: m,
  })
}
