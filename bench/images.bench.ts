import { execFileSync, spawnSync } from 'node:child_process'
import { mkdir, mkdtemp, readdir, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { lockWorld, startWorld } from '../test/support/world.js'
import { CLI, mib, NO_WORK_SKIPPED, row, timed } from './util.js'

/**
 * Issue 3's figures: the images part of a cold `bundle build` against a local registry vs
 * `skopeo copy` of each image to its own OCI archive one after another, and the bundle's
 * image bytes vs the unique bytes (and vs the sum of per-image archives).
 */
export async function benchImages(): Promise<string[]> {
  const dir = await mkdtemp(join(process.env.KA_BENCH_DIR ?? tmpdir(), 'ka-bench-images-'))
  // 10 images, each a 30 MiB shared base and its own 48 MiB layer: 510 MiB unique, 780 MiB per-image.
  const world = await startWorld(dir, { size: () => 2048, layerBytes: { base: 30 << 20, own: 48 << 20 } })
  try {
    const lockPath = join(dir, 'bundle.lock.json')
    const manifest = world.manifestText.replace(/\n {2}- docker\.io\/library\/hello-frontend:1\.0/, '')
    await lockWorld(world, lockPath, join(dir, 'lock-cache'), manifest)
    const images = [...world.images.values()].filter((i) => i.arm64)
    const unique = new Map<string, number>()
    for (const im of images) for (const b of [im.amd64.manifest, im.amd64.config, ...im.amd64.layers]) unique.set(b.digest, b.size)
    const uniqueBytes = [...unique.values()].reduce((a, b) => a + b, 0)
    const layerBytes = images.reduce((s, im) => s + im.amd64.layers.reduce((a, l) => a + l.size, 0), 0)
    const lines = [`images: ${images.length} images, ${mib(layerBytes)} of layers per image summed, ${mib(uniqueBytes)} unique (${NO_WORK_SKIPPED})`]

    if (spawnSync('skopeo', ['--version']).status !== 0) return [...lines, '  (skopeo not installed: apt-get install skopeo for this comparison)']
    const skopeoOut = join(dir, 'skopeo')
    await mkdir(skopeoOut, { recursive: true })
    const prefix = (name: string) =>
      name.startsWith('registry.k8s.io/') ? `k8s/${name.slice('registry.k8s.io/'.length)}` : `hub/${name.slice('docker.io/'.length)}`
    const script = images
      .map(
        (im, i) =>
          `skopeo copy -q --src-tls-verify=false --override-os linux --override-arch amd64 docker://${world.registry.host}/${prefix(im.name)} oci-archive:${skopeoOut}/${i}.tar:${im.name.split(':').pop()}`,
      )
      .join(' && ')
    const skopeo = await timed('sh', ['-c', script])
    // Straight to the registry, as skopeo goes (the tests' logging forwarder stays out of it).
    const direct = world.args.map((a) => a.replace(world.front.url, world.registry.url))
    const ours = await timed(process.execPath, [CLI, 'build', '--lock', lockPath, '--out', join(dir, 'out'), '--cache', join(dir, 'cache'), ...direct])
    lines.push(row('cold build (images) vs skopeo copy, one by one', ours.seconds, skopeo.seconds, '<= 0.5x'))

    let archives = 0
    for (const f of await readdir(skopeoOut)) archives += (await stat(join(skopeoOut, f))).size
    const tar = join(dir, 'out', 'kube-airgap-v1.29.3-linux-amd64.tar')
    const listing = execFileSync('tar', ['tvf', tar], { encoding: 'utf8', maxBuffer: 64 << 20 })
    const imageBytes = listing
      .split('\n')
      .filter((l) => l.includes('/images/'))
      .reduce((s, l) => s + Number(l.split(/\s+/)[2] ?? 0), 0)
    const tarSize = (await stat(tar)).size
    lines.push(
      `bundle images/ ${mib(imageBytes)} vs unique bytes ${mib(uniqueBytes)}: ${((100 * (imageBytes - uniqueBytes)) / uniqueBytes).toFixed(3)}% over (target within 1%); whole tar ${mib(tarSize)}`,
    )
    lines.push(`sum of one skopeo archive per image: ${mib(archives)} (the bundle's images take ${((100 * imageBytes) / archives).toFixed(0)}% of that)`)
    return lines
  } finally {
    await world.close()
    await rm(dir, { recursive: true, force: true })
  }
}
