import { mkdir, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { Sha256 } from '../../../bundle/digest.js'
import { packagePath } from '../../../bundle/layout.js'
import type { LockedPackage } from '../../../bundle/lock.js'
import { OS_RELEASE_FILES, PACKAGE_STAGING } from '../../../installer/node-paths.js'
import { packages } from '../../../installer/phases/packages.js'
import { runPhases } from '../../../installer/plan.js'
import { MemoryHost, memoryBundle, memoryContext } from '../../support/memory-host.js'

/** A package of `release` whose bytes are its release and name. */
const pkg = (release: string, name: string, ext: string, version: string, over: Partial<LockedPackage> = {}): LockedPackage & { bytes: Buffer } => {
  const bytes = Buffer.from(`${release} ${name}`)
  return {
    release,
    platform: 'linux/amd64',
    name,
    version,
    url: `https://mirror.invalid/${name}.${ext}`,
    integrity: Sha256.of(bytes),
    size: bytes.length,
    file: `${name}.${ext}`,
    ...over,
    bytes,
  }
}

/** A bundle carrying these packages, each one's bytes where the bundle keeps them. */
async function carrying(all: (LockedPackage & { bytes: Buffer })[]) {
  const bundle = await memoryBundle({}, 'linux/amd64', all)
  for (const p of all) {
    const at = join(bundle.dir, packagePath(p.release, p.file))
    await mkdir(dirname(at), { recursive: true })
    await writeFile(at, p.bytes)
  }
  return bundle
}

/** A bundle carrying a Debian 12 set and a Rocky 9 set. */
const twoSets = () =>
  carrying([
    pkg('debian-12', 'conntrack', 'deb', '1:1.4.7-1+b2'),
    pkg('debian-12', 'socat', 'deb', '1.7.4.4-2'),
    pkg('rocky-9', 'conntrack-tools', 'rpm', '0:1.4.7-2.el9'),
    pkg('rocky-9', 'socat', 'rpm', '0:1.7.4.1-5.el9'),
  ])

const nodeOf = (osRelease: string) => new MemoryHost({ [OS_RELEASE_FILES[0]!]: osRelease })

describe('the packages phase, on a node in memory', () => {
  it("a Debian node gets its release's set through dpkg, each package staged and checked first; a rerun has nothing to do", async () => {
    const host = nodeOf('ID=debian\nVERSION_ID="12"\n')
    host.packages.set('socat', '1.7.4.4-2')
    const ctx = memoryContext(host, await twoSets())
    const [step] = await packages.plan(ctx)
    expect(step?.title).toBe('OS packages for debian-12 (2: 1 to install: conntrack)')
    await runPhases(ctx, [packages], () => {})
    expect(host.changes).toEqual([`write ${PACKAGE_STAGING}/conntrack.deb`, `run dpkg --install ${PACKAGE_STAGING}/conntrack.deb`, `remove ${PACKAGE_STAGING}`])
    expect((await packages.plan(ctx))[0]?.done).toBe(true)
  })

  it('an RPM node (told by ID_LIKE when its ID is a derivative) gets its set through rpm; a package older than the pin is upgraded', async () => {
    const host = nodeOf('ID="rocky"\nID_LIKE="rhel centos fedora"\nVERSION_ID="9.4"\n')
    host.packages.set('conntrack-tools', '0:1.4.5-1.el9')
    host.packages.set('socat', '0:1.7.4.1-5.el9')
    const ctx = memoryContext(host, await twoSets())
    expect(ctx.facts).toMatchObject({ release: 'rocky-9', family: 'rpm' })
    const [step] = await packages.plan(ctx)
    expect(step?.title).toBe('OS packages for rocky-9 (2: 1 to install: conntrack-tools)')
    await runPhases(ctx, [packages], () => {})
    expect(host.changes).toEqual([
      `write ${PACKAGE_STAGING}/conntrack-tools.rpm`,
      `run rpm -U --nosignature ${PACKAGE_STAGING}/conntrack-tools.rpm`,
      `remove ${PACKAGE_STAGING}`,
    ])
  })

  it('the lock says how a set installs: a node whose own os-release names no known family takes rpm from it', async () => {
    const host = nodeOf('ID="myrocky"\nVERSION_ID="9"\n')
    const bundle = await carrying([pkg('myrocky-9', 'socat', 'rpm', '0:1.7.4.1-5.el9', { family: 'rpm' })])
    const ctx = memoryContext(host, bundle)
    expect(ctx.facts.family).toBeUndefined()
    await runPhases(ctx, [packages], () => {})
    expect(host.changes).toContain(`run rpm -U --nosignature ${PACKAGE_STAGING}/socat.rpm`)
  })

  it('a node of a release the bundle does not carry: refused with both ways out, nothing changed; a dry run says FAIL and goes on', async () => {
    const host = nodeOf('ID="ol"\nID_LIKE="fedora"\nVERSION_ID="9.3"\n')
    const bundle = await twoSets()
    const ctx = memoryContext(host, bundle)
    expect(ctx.facts).toMatchObject({ release: 'ol-9.3', family: 'rpm' })
    await expect(packages.plan(ctx)).rejects.toThrow(
      /this node runs ol-9\.3; the bundle carries OS packages for debian-12, rocky-9: use a bundle whose manifest lists ol-9\.3 under packages\.releases, or run with --skip-phases packages/,
    )
    const says: string[] = []
    const [dry] = await packages.plan(memoryContext(host, bundle, { dryRun: true, says }))
    expect(dry?.done).toBe(true)
    expect(says).toEqual(['FAIL  packages: this node runs ol-9.3; the bundle carries OS packages for debian-12, rocky-9: a real run stops here'])
    expect(host.changes).toEqual([])
  })
})
