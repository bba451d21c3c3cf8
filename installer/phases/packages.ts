import { createReadStream } from 'node:fs'
import { KaError } from '../../bundle/errors.js'
import { packagePath } from '../../bundle/layout.js'
import type { LockedPackage } from '../../bundle/lock.js'
import type { Action, Context, Phase } from '../plan.js'
import { PACKAGE_STAGING } from '../node-paths.js'

/** `ubuntu-22.04`, `debian-12`: ID and VERSION_ID of /etc/os-release, as the bundle names its sets. */
export async function nodeRelease(ctx: Context): Promise<string | undefined> {
  const text = (await ctx.host.readText('/etc/os-release')) ?? (await ctx.host.readText('/usr/lib/os-release'))
  const field = (k: string) => new RegExp(`^${k}="?([^"\\n]*)"?$`, 'm').exec(text ?? '')?.[1]
  const id = field('ID')
  const version = field('VERSION_ID')
  return id && version ? `${id}-${version}` : undefined
}

/** The bundle's packages for this node's release (empty when the bundle carries none for it). */
export async function packagesForNode(ctx: Context): Promise<{ release?: string; mine: LockedPackage[]; carried: string[] }> {
  const all = ctx.bundle.lock.packages.filter((p) => p.platform === ctx.bundle.platform)
  const release = await nodeRelease(ctx)
  return { ...(release ? { release } : {}), mine: all.filter((p) => p.release === release), carried: [...new Set(all.map((p) => p.release))] }
}

const staged = (p: LockedPackage): string => `${PACKAGE_STAGING}/${p.file}`

/** dpkg and dpkg-query, on the node or (under --root) on the system in the root. */
const dpkg = (ctx: Context, tool: 'dpkg' | 'dpkg-query', ...args: string[]) => [tool, ...(ctx.host.root === '/' ? [] : [`--root=${ctx.host.root}`]), ...args]

export const packages: Phase = {
  name: 'packages',
  summary:
    "installs the OS packages this node lacks (conntrack, socat, ...) from the bundle's set for its release, with dpkg and no network source; then dpkg --audit must be clean",
  async plan(ctx) {
    const { release, mine, carried } = await packagesForNode(ctx)
    if (carried.length === 0) return [{ title: 'no OS packages in this bundle', done: true, checkOnly: true, actions: [] }]
    if (!mine.length) {
      const why = `this node runs ${release ?? 'an unknown release (no /etc/os-release)'}; the bundle carries OS packages for ${carried.join(', ')}`
      if (ctx.options.dryRun) {
        ctx.say(`FAIL  packages: ${why}: a real run stops here`)
        return [{ title: `OS packages: none for this node (${why})`, done: true, checkOnly: true, actions: [] }]
      }
      throw new KaError(
        'EUSAGE',
        `this node runs ${release ?? 'an unknown release (no /etc/os-release)'}; the bundle carries OS packages for ${carried.join(', ')}: build one with --os ${release ?? '<release>'}, or run with --skip-phases packages if conntrack, socat, ebtables, ethtool, ipset and iptables are installed already`,
      )
    }
    // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's own format, not a template
    const q = await ctx.host.run(dpkg(ctx, 'dpkg-query', '-W', '-f=${Package} ${Status}\\n', ...mine.map((p) => p.name)), { changing: false })
    const installed = new Set(
      q.stdout
        .split('\n')
        .filter((l) => l.endsWith(' install ok installed'))
        .map((l) => l.split(' ')[0]),
    )
    const missing = mine.filter((p) => !installed.has(p.name))
    return [
      {
        title: `OS packages for ${release} (${mine.length}: ${missing.length ? `${missing.length} to install: ${missing.map((p) => p.name).join(', ')}` : 'all installed'})`,
        done: missing.length === 0,
        // Staged on the node first, each .deb checked against its pin as it is written (dpkg
        // then reads the checked copy, not the stick again); one dpkg run for all: dpkg orders
        // unpacking and configuration by their dependencies.
        actions: [
          ...missing.map(
            (p): Action => ({
              kind: 'write',
              path: staged(p),
              mode: 0o644,
              sha256: p.integrity,
              size: p.size,
              data: () => createReadStream(ctx.bundle.path(packagePath(p.release, p.file))),
            }),
          ),
          { kind: 'run', argv: dpkg(ctx, 'dpkg', '--install', ...missing.map((p) => ctx.host.path(staged(p)))) },
          { kind: 'remove', path: PACKAGE_STAGING },
        ],
        check: async () => {
          const audit = await ctx.host.run(dpkg(ctx, 'dpkg', '--audit'), { changing: false })
          if (audit.stdout.trim() || audit.code !== 0)
            throw new KaError(
              'ESTEP',
              `dpkg --audit is not clean after installing: ${audit.stdout.trim().split('\n').slice(0, 3).join(' / ')}; run dpkg --configure -a and see its errors`,
            )
        },
      },
    ]
  },
}
