import { createReadStream } from 'node:fs'
import { KaError } from '../../bundle/errors.js'
import { packagePath } from '../../bundle/layout.js'
import type { LockedPackage } from '../../bundle/lock.js'
import type { Action, Context, Phase, Step } from '../plan.js'
import { PACKAGE_STAGING } from '../node-paths.js'
import { packagesHere } from '../os-packages.js'
import { compareEvr } from '../../bundle/rpm-version.js'

const staged = (p: LockedPackage): string => `${PACKAGE_STAGING}/${p.file}`

/** The node's package manager, as the bundle's set for its release needs it: dpkg for .deb, rpm for .rpm. */
interface Manager {
  /** Which of the pinned packages the node has already (by name; for rpm also at least at the pinned version). */
  installed(ctx: Context, pinned: LockedPackage[]): Promise<Set<string>>
  /** The commands that install `missing`, in order. */
  install(ctx: Context, missing: LockedPackage[]): string[][]
  /** What is wrong afterwards with what this run installed (`names`), if anything. */
  audit(ctx: Context, names: string[]): Promise<string | undefined>
}

/** A tool on the node or, under --root, on the system in the root. */
const rooted = (ctx: Context, tool: string, flag: (root: string) => string[], ...args: string[]) => [
  tool,
  ...(ctx.host.root === '/' ? [] : flag(ctx.host.root)),
  ...args,
]

const dpkg: Manager = {
  async installed(ctx, pinned) {
    const q = await ctx.host.run(
      // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's own format, not a template
      rooted(ctx, 'dpkg-query', (r) => [`--root=${r}`], '-W', '-f=${Package} ${Status}\\n', ...pinned.map((p) => p.name)),
      { changing: false },
    )
    return new Set(
      q.stdout
        .split('\n')
        .filter((l) => l.endsWith(' install ok installed'))
        .map((l) => l.split(' ')[0]!),
    )
  },
  // One dpkg --install per stage the lock gives: dpkg unpacks a package only once its
  // pre-dependencies are configured (python3 after python3-minimal), as apt orders it.
  install: (ctx, missing) =>
    [...new Set(missing.map((p) => p.stage ?? 0))]
      .sort((a, b) => a - b)
      .map((stage) =>
        rooted(ctx, 'dpkg', (r) => [`--root=${r}`], '--install', ...missing.filter((p) => (p.stage ?? 0) === stage).map((p) => ctx.host.path(staged(p)))),
      ),
  async audit(ctx) {
    const audit = await ctx.host.run(
      rooted(ctx, 'dpkg', (r) => [`--root=${r}`], '--audit'),
      { changing: false },
    )
    if (!audit.stdout.trim() && audit.code === 0) return undefined
    return `dpkg --audit is not clean after installing: ${audit.stdout.trim().split('\n').slice(0, 3).join(' / ')}; run dpkg --configure -a and see its errors`
  },
}

/**
 * rpm: installs with its own payload digests checked but --nosignature. The policy: the
 * pin is the trust. Each .rpm's sha256 comes from repodata whose signature `bundle lock`
 * checked against the distribution's key, and the copy rpm reads was checked against it
 * as it was staged; a fresh node whose rpm database has not imported the distribution's key
 * yet must still install, and a package the pin does not cover never gets this far.
 */
const rpm: Manager = {
  // A package older than the pin (libnetfilter_queue 1.0.4 where the closure needs >= 1.0.5)
  // is not installed for this set: rpm -U would refuse the rest. It is upgraded to the pin.
  async installed(ctx, pinned) {
    const q = await ctx.host.run(
      rooted(ctx, 'rpm', (r) => ['--root', r], '-q', '--qf', '%{NAME}\\t%{EPOCHNUM}:%{VERSION}-%{RELEASE}\\n', ...pinned.map((p) => p.name)),
      { changing: false },
    )
    const have = new Map<string, string[]>()
    for (const [name, evr] of q.stdout.split('\n').map((l) => l.split('\t'))) if (name && evr) have.set(name, [...(have.get(name) ?? []), evr])
    return new Set(pinned.filter((p) => have.get(p.name)?.some((evr) => compareEvr(evr, p.version) >= 0)).map((p) => p.name))
  },
  // One transaction: rpm orders it by every dependency, pre-install ones included.
  install: (ctx, missing) => [rooted(ctx, 'rpm', (r) => ['--root', r], '-U', '--nosignature', ...missing.map((p) => ctx.host.path(staged(p))))],
  // Only what the bundle installed: a package the site had is the site's, changes included.
  async audit(ctx, names) {
    if (names.length === 0) return undefined
    const v = await ctx.host.run(
      rooted(ctx, 'rpm', (r) => ['--root', r], '-V', ...names),
      { changing: false },
    )
    // A configuration file the operator edited is theirs, not damage: rpm -V marks it `c`.
    const problems = v.stdout.split('\n').filter((l) => l.trim() && !/^\S+\s+c\s/.test(l))
    if (!problems.length) return undefined
    return `rpm -V is not clean after installing: ${problems.slice(0, 3).join(' / ')}; see rpm -V ${names.join(' ')}`
  },
}

export const packages: Phase = {
  name: 'packages',
  summary:
    "installs the OS packages this node lacks (conntrack, socat, ...) from the bundle's set for its release, with dpkg or rpm and no network source; then dpkg --audit, or rpm -V of what it installed, must be clean",
  async plan(ctx) {
    const { release, mine, carried } = packagesHere(ctx)
    if (carried.length === 0) return [{ title: 'no OS packages in this bundle', done: true, checkOnly: true, actions: [] }]
    if (!mine.length) {
      const why = `this node runs ${release ?? 'an unknown release (no /etc/os-release)'}; the bundle carries OS packages for ${carried.join(', ')}`
      if (ctx.options.dryRun) {
        ctx.say(`FAIL  packages: ${why}: a real run stops here`)
        return [{ title: `OS packages: none for this node (${why})`, done: true, checkOnly: true, actions: [] }]
      }
      throw new KaError(
        'EUSAGE',
        `this node runs ${release ?? 'an unknown release (no /etc/os-release)'}; the bundle carries OS packages for ${carried.join(', ')}: use a bundle whose manifest lists ${release ?? 'this release'} under packages.releases, or run with --skip-phases packages if conntrack, socat, ebtables, ethtool, ipset and iptables are installed already`,
      )
    }
    return [await installStep(ctx, `OS packages for ${release}`, mine)]
  },
}

/**
 * The step that installs what `mine` (one release's set) holds and the machine lacks, with
 * its own package manager and no network source: each file staged on the machine and
 * checked against its pin as it is written, then one dpkg or rpm run for all.
 */
export async function installStep(ctx: Context, what: string, mine: LockedPackage[]): Promise<Step> {
  // The lock says how the set installs; a lock from before it did, the machine's own family.
  const manager = (mine[0]!.family ?? ctx.facts.family) === 'rpm' ? rpm : dpkg
  const installed = await manager.installed(ctx, mine)
  const missing = mine.filter((p) => !installed.has(p.name))
  return {
    title: `${what} (${mine.length}: ${missing.length ? `${missing.length} to install: ${missing.map((p) => p.name).join(', ')}` : 'all installed'})`,
    done: missing.length === 0,
    // dpkg or rpm reads the checked copy, not the stick again.
    actions: [
      ...missing.map(
        (p): Action => ({
          kind: 'write',
          path: staged(p),
          mode: 0o644,
          sha256: p.integrity,
          size: p.size,
          data: () => createReadStream(ctx.bundle.path(packagePath(p.release, p.file)), { highWaterMark: 1 << 20 }),
        }),
      ),
      ...manager.install(ctx, missing).map((argv): Action => ({ kind: 'run', argv })),
      { kind: 'remove', path: PACKAGE_STAGING },
    ],
    check: async () => {
      const problem = await manager.audit(
        ctx,
        missing.map((p) => p.name),
      )
      if (problem) throw new KaError('ESTEP', problem)
    },
  }
}
