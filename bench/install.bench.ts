import { execFileSync } from 'node:child_process'
import { createWriteStream } from 'node:fs'
import { copyFile, mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pipeline } from 'node:stream/promises'
import { openBundle } from '../bundle/open.js'
import { layoutStream } from '../installer/phases/images.js'
import { startContainerd } from '../test/support/containerd.js'
import { REPO } from '../test/support/fake-upstream.js'
import { lockWorld, startWorld } from '../test/support/world.js'
import { benchNodeInstall } from './node-install.js'
import { CLI, medianOf, mib, NO_WORK_SKIPPED, row, timed } from './util.js'

const INSTALLER = join(REPO, 'lib', 'installer', 'install.mjs')

/**
 * Issue 4's figures, on one bundle of ~500 MiB: the installer's `verify` vs
 * `sha256sum -c SHA256SUMS`, and the `images` phase vs importing one tar per image with
 * `ctr import`, one after another (each side into its own fresh containerd); then a first
 * master's whole install against the field notes' commands (node-install.ts).
 */
export async function benchInstall(): Promise<string[]> {
  const dir = await mkdtemp(join(process.env.KA_BENCH_DIR ?? tmpdir(), 'ka-bench-install-'))
  // Real-shaped: Debian's containerd, runc and CNI plugins in the bundle, for the whole install at the end.
  const world = await startWorld(dir, { realistic: true, layerBytes: { base: 24 << 20, own: 40 << 20 } })
  try {
    const lockPath = join(dir, 'bundle.lock.json')
    await lockWorld(world, lockPath, join(dir, 'cache'), world.manifestText.replace(/\n {2}- docker\.io\/library\/hello-frontend:1\.0/, ''))
    const direct = world.args.map((a) => a.replace(world.front.url, world.registry.url))
    // Not execFileSync: the fake upstream answers from this very process.
    await timed(process.execPath, [CLI, 'build', '--lock', lockPath, '--out', join(dir, 'out'), '--cache', join(dir, 'cache'), ...direct])
    execFileSync('tar', ['xf', 'kube-airgap-v1.29.3-linux-amd64.tar'], { cwd: join(dir, 'out') })
    const bundleDir = join(dir, 'out', 'kube-airgap-v1.29.3-linux-amd64')
    const size = Number(execFileSync('du', ['-sb', bundleDir], { encoding: 'utf8' }).split('\t')[0])
    const lines = [`install: bundle of ${mib(size)} (${NO_WORK_SKIPPED})`]

    const ours = await medianOf(3, () => timed(process.execPath, [INSTALLER, '--bundle', bundleDir, 'verify']))
    const theirs = await medianOf(3, () => timed('sha256sum', ['--quiet', '-c', 'SHA256SUMS'], { cwd: bundleDir }))
    lines.push(row('verify vs sha256sum -c SHA256SUMS', ours.seconds, theirs.seconds, `<= 1.11x (speed >= 0.9x)`))

    // One tar per image, made from the same layout, for the ctr-import-per-image baseline.
    const bundle = await openBundle(bundleDir)
    const tars: string[] = []
    for (const [i, im] of bundle.images.entries()) {
      const t = join(dir, 'per-image', `${i}.tar`)
      await mkdir(join(dir, 'per-image'), { recursive: true })
      await pipeline(layoutStream(bundle, [im]), createWriteStream(t))
      tars.push(t)
    }
    const root = join(dir, 'root')
    await mkdir(join(root, 'usr/local/bin'), { recursive: true })
    await copyFile('/usr/bin/ctr', join(root, 'usr/local/bin/ctr'))
    const a = await startContainerd(join(dir, 'ctd-ours'))
    const phase = await timed(process.execPath, [
      INSTALLER,
      '--bundle',
      bundleDir,
      '--role',
      'worker',
      '--root',
      root,
      '--phases',
      'images',
      '--containerd-address',
      a.socket,
    ])
    await a.stop()
    const b = await startContainerd(join(dir, 'ctd-theirs'))
    const perImage = await timed('sh', ['-c', tars.map((t) => `ctr --address ${b.socket} -n k8s.io images import ${t} >/dev/null`).join(' && ')])
    await b.stop()
    lines.push(row(`images phase vs ctr import of ${tars.length} tars one by one`, phase.seconds, perImage.seconds, '<= 0.7x'))
    lines.push(...(await benchNodeInstall(dir, bundle, tars)))
    return lines
  } finally {
    await world.close()
    await rm(dir, { recursive: true, force: true })
  }
}
