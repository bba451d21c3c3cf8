import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { parseManifest } from '../../builder/lock/manifest.js'
import { misfits, parseCompatibility } from '../../bundle/compatibility.js'
import { COMPATIBILITY_FILE } from '../../bundle/layout.js'
import { parseLock } from '../../bundle/lock.js'
import { bundleMisfit } from '../../installer/commands/upgrade.js'
import { bundleCli } from '../support/cli.js'
import { DEFAULT_MANIFEST, REPO } from '../support/fake-upstream.js'

const TABLE = join(REPO, 'manifests', 'compatibility.yaml')
const table = async () => parseCompatibility(await readFile(TABLE, 'utf8'), TABLE)
const versions = (o: Record<string, string>) => new Map(Object.entries(o))

describe('manifests/compatibility.yaml', () => {
  it('every shipped manifest fits, every rule judged', async () => {
    for (const file of [DEFAULT_MANIFEST, join(REPO, 'manifests', 'kubernetes-1.35.yaml'), join(REPO, 'manifests', 'kubernetes-1.36.yaml')]) {
      const m = parseManifest(await readFile(file, 'utf8'), file)
      const unknown: string[] = []
      expect(misfits(await table(), new Map([['kubernetes', m.kubernetes], ...m.components]), unknown), file).toEqual([])
      expect(unknown, file).toEqual([])
    }
  })

  it('names each pair that does not fit, what to give instead, and the source; a minor it has no row for is only noted', async () => {
    const t = await table()
    const found = misfits(t, versions({ kubernetes: '1.34.2', containerd: '1.7.16', 'calico-manifest': '3.28.0', crictl: '1.29.0', runc: '1.1.12' }))
    expect(found.map((f) => f.problem)).toEqual([
      'containerd 1.7.16 is not recommended for Kubernetes 1.34',
      'Calico 3.28.0 does not support Kubernetes 1.34 (it is tested on 1.27 to 1.30)',
      "crictl 1.29.0 is not Kubernetes 1.34's",
    ])
    expect(found[0]!.fix).toBe('give containerd (and containerd-service) one of 2.1.3+, 2.0.6+, 1.7.28+, 1.6.39+')
    expect(found[1]!.fix).toBe('give calico-manifest and calicoctl 3.30 or 3.31 or 3.32')
    expect(found[1]!.source).toMatch(/tigera\/docs/)
    expect(misfits(t, versions({ containerd: '2.0.0', runc: '1.1.12' })).map((f) => f.problem)).toEqual([
      'runc 1.1.12 is older than containerd 2.0 goes with (1.2.1)',
    ])
    const unknown: string[] = []
    expect(misfits(t, versions({ kubernetes: '1.40.0', containerd: '3.0.0' }), unknown)).toEqual([])
    expect(unknown).toEqual(['Kubernetes 1.40 (no containerd row)'])
  })

  it('bundle lock refuses Calico 3.28 with Kubernetes 1.33 before fetching anything, naming both and the source', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ka-fit-'))
    try {
      const text = (await readFile(DEFAULT_MANIFEST, 'utf8'))
        .replace('kubernetes: 1.29.3', 'kubernetes: 1.33.4')
        .replace(/containerd(-service)?: 1\.7\.16/g, 'containerd$1: 1.7.28')
        .replace('crictl: 1.29.0', 'crictl: 1.33.0')
      await writeFile(join(dir, 'm.yaml'), text)
      const r = await bundleCli(['lock', '--manifest', join(dir, 'm.yaml'), '--out', join(dir, 'l.json'), '--cache', join(dir, 'cache')])
      expect(r.code).toBe(2)
      expect(r.stderr.trim().split('\n')).toEqual([
        expect.stringMatching(
          /the manifest: Calico 3\.28\.0 does not support Kubernetes 1\.33 \(it is tested on 1\.27 to 1\.30\): give calico-manifest and calicoctl 3\.30 or 3\.31 \(source: Calico, .*tigera\/docs.*\)/,
        ),
      ])
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('./install upgrade refuses a bundle whose own versions do not fit (a lock made by hand), with what to change; one from before the table is not judged', async () => {
    const lock = parseLock(await readFile(join(REPO, 'bundle.lock.json'), 'utf8'))
    const tableText = await readFile(TABLE, 'utf8')
    const bundle = (l: typeof lock, has = true) => ({
      lock: l,
      read: async (rel: string) => (has && rel === COMPATIBILITY_FILE ? tableText : Promise.reject(new Error('missing'))),
    })
    expect(await bundleMisfit(bundle(lock))).toBeUndefined()
    const byHand = {
      ...lock,
      kubernetes: '1.31.4',
      files: lock.files.map((f) => (f.name === 'crictl' ? { ...f, version: '1.31.0' } : f.name === 'containerd' ? { ...f, version: '1.7.24' } : f)),
    }
    expect(await bundleMisfit(bundle(byHand))).toMatch(
      /^this bundle does not fit together: Calico 3\.28\.0 does not support Kubernetes 1\.31 \(it is tested on 1\.27 to 1\.30\); give calico-manifest and calicoctl 3\.29 or 3\.30 in its manifest, then bundle lock and bundle build again \(source: Calico/,
    )
    expect(await bundleMisfit(bundle(byHand, false))).toBeUndefined()
  })
})
