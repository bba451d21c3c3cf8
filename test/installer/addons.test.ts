import { execFileSync, spawnSync } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import yaml from 'js-yaml'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ADDONS, C, type Addon } from '../../bundle/components.js'
import { manifestImageRefs, manifestImages, requiredImages } from '../../bundle/closed-world.js'
import { Sha256 } from '../../bundle/digest.js'
import { addonChoices, DEFAULT_ADDONS, imagePins, patchAddon } from '../../installer/addons.js'
import { patchFlannel } from '../../installer/flannel.js'
import { ADDON_FIXTURES, REFERENCE } from '../support/world.js'

// The real kubectl decodes each manifest as it would before sending it (--local: no API server),
// so what js-yaml wrote is compared with upstream as Kubernetes reads both. This machine kind
// ships kubectl (Google's Cloud SDK package); where it has none the two tests below are skipped,
// and say so in their titles: no archive this machine reaches carries a kubectl binary.
const kubectl = spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8' }).status === 0 ? 'kubectl' : undefined

let dir: string
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ka-addons-'))
})
afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

/** Every object of a manifest as kubectl decodes it (label --local prints them one after the other). */
async function decoded(text: string): Promise<Record<string, unknown>[]> {
  const file = join(dir, `m-${Math.random().toString(16).slice(2)}.yaml`)
  await writeFile(file, text)
  const out = execFileSync(kubectl!, ['label', '--local', '-f', file, 'kube-airgap.test/decoded=1', '-o', 'json'], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH ?? '', HOME: dir },
  })
  return out
    .trim()
    .split(/\n}\n(?=\{)/)
    .map((part, i, all) => JSON.parse(i < all.length - 1 ? `${part}\n}` : part) as Record<string, unknown>)
}

/** The paths where two decoded values differ, e.g. `[3].spec.template.spec.containers[0].image`. */
function differences(a: unknown, b: unknown, at = ''): string[] {
  if (typeof a !== typeof b || Array.isArray(a) !== Array.isArray(b) || a === null || b === null || typeof a !== 'object')
    return JSON.stringify(a) === JSON.stringify(b) ? [] : [at]
  const keys = new Set([...Object.keys(a as object), ...Object.keys(b as object)])
  return [...keys].flatMap((k) =>
    differences((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], Array.isArray(a) ? `${at}[${k}]` : `${at}.${k}`),
  )
}

const fixture = (name: string) => readFile(join(REFERENCE, 'addons', ADDON_FIXTURES[name]!.file), 'utf8')
const digestOf = (name: string) => Sha256.of(name)
const pinsFor = (text: string) => imagePins(manifestImages(text).map((ref) => ({ ref, digest: digestOf(ref) })))

/** What each add-on's patch may change, beyond every container's image and imagePullPolicy. */
const CONTAINER = /^\[\d+\]\.spec\.(template\.spec|jobTemplate\.spec\.template\.spec)\.(initContainers|containers)\[\d+\]\.(image|imagePullPolicy)$/

describe(`add-on manifests, patched, as the real kubectl decodes them${kubectl ? '' : ' (skipped: no kubectl on this machine)'}`, () => {
  it.skipIf(!kubectl)('each upstream manifest changes only in its images, pull policies and the chosen options', async () => {
    const choices = addonChoices({ localPathProvisioner: { path: '/data/volumes' }, ingressNginx: { expose: 'hostport' } }, 'cluster.yaml')
    const allowed: Record<Addon, RegExp[]> = {
      [C.localPath]: [
        /^\[\d+\]\.metadata\.annotations$/, // the StorageClass, default (it has no annotations upstream)
        /^\[\d+\]\.data\.config\.json$/,
        /^\[\d+\]\.data\.helperPod\.yaml$/,
      ],
      [C.metricsServer]: [/^\[\d+\]\.spec\.template\.spec\.containers\[0\]\.args\[\d+\]$/],
      [C.ingressNginx]: [/^\[\d+\]\.spec\.template\.spec\.containers\[0\]\.ports\[[01]\]\.hostPort$/],
    }
    for (const addon of ADDONS) {
      const text = await fixture(addon)
      const pins = pinsFor(text)
      const patched = patchAddon(addon, text, pins, choices)
      const [before, after] = [await decoded(text), await decoded(patched.text)]
      expect(after.length, addon).toBe(before.length)
      const changed = differences(before, after)
      const unexpected = changed.filter((p) => !CONTAINER.test(p) && !allowed[addon].some((r) => r.test(p)))
      expect(unexpected, addon).toEqual([])
      // Every container (and the helper pod) now names its pinned digest and never pulls if present.
      for (const ref of manifestImageRefs(patched.text)) expect(ref, addon).toMatch(/^[^@]+:[^@/]+@sha256:[0-9a-f]{64}$/)
      expect(manifestImages(patched.text), addon).toEqual(manifestImages(text))
      expect(
        patched.text.match(/imagePullPolicy: (\w+)/g)?.every((l) => l.endsWith('IfNotPresent')),
        addon,
      ).toBe(true)
      // Each chosen option did change what it should.
      for (const r of allowed[addon])
        expect(
          changed.some((p) => r.test(p)),
          `${addon}: ${r}`,
        ).toBe(true)
    }
    // local-path: the helper pod decoded from the ConfigMap differs from upstream's only in its image (upstream pulls it IfNotPresent already).
    const lp = await fixture(C.localPath)
    const cm = (docs: Record<string, unknown>[]) => docs.find((d) => d.kind === 'ConfigMap') as { data: Record<string, string> }
    const [up, ours] = [cm(await decoded(lp)), cm(await decoded(patchAddon(C.localPath, lp, pinsFor(lp), choices).text))]
    expect(differences(yaml.load(up.data['helperPod.yaml']!), yaml.load(ours.data['helperPod.yaml']!))).toEqual(['.spec.containers[0].image'])
    expect(ours.data['helperPod.yaml']).toMatch(/image: docker\.io\/library\/busybox:latest@sha256:[0-9a-f]{64}\n\s+imagePullPolicy: IfNotPresent/)
    expect(JSON.parse(ours.data['config.json']!)).toEqual({ nodePathMap: [{ node: 'DEFAULT_PATH_FOR_NON_LISTED_NODES', paths: ['/data/volumes'] }] })
  })

  it.skipIf(!kubectl)('Flannel: its network set to the pod subnet, images never pulled, nothing else changed', async () => {
    const text = await fixture(C.flannelManifest)
    const patched = patchFlannel(text, '10.32.0.0/16')
    const [before, after] = [await decoded(text), await decoded(patched.text)]
    const changed = differences(before, after)
    expect(changed.filter((p) => !/^\[\d+\]\.spec\.template\.spec\.(initContainers|containers)\[\d+\]\.imagePullPolicy$/.test(p))).toEqual([
      expect.stringMatching(/^\[\d+\]\.data\.net-conf\.json$/),
    ])
    const cm = after.find((d) => d.kind === 'ConfigMap') as { data: Record<string, string> }
    expect(JSON.parse(cm.data['net-conf.json']!)).toEqual({ Network: '10.32.0.0/16', EnableNFTables: false, Backend: { Type: 'vxlan' } })
    expect(patched.text.match(/imagePullPolicy: (\w+)/g)?.every((l) => l.endsWith('Never'))).toBe(true)
  })
})

describe('the closed world of add-ons', () => {
  it("names every add-on's images, the helper pod's in local-path's ConfigMap among them", async () => {
    const manifests = await Promise.all(ADDONS.map(async (component) => ({ component, text: await fixture(component) })))
    const { wants } = requiredImages('1.29.3', await readFile(join(__dirname, '..', '..', 'manifests', 'kubeadm-images.yaml'), 'utf8'), manifests)
    const by = (image: string) => wants.find((w) => w.image === image)?.neededBy
    expect(by('docker.io/library/busybox:latest')).toBe('local-path-storage.yaml')
    expect(by('docker.io/rancher/local-path-provisioner:v0.0.37')).toBe('local-path-storage.yaml')
    expect(by('registry.k8s.io/metrics-server/metrics-server:v0.8.1')).toBe("metrics-server's components.yaml")
    expect(by('registry.k8s.io/ingress-nginx/kube-webhook-certgen:v1.6.9')).toBe("ingress-nginx's deploy.yaml")
    expect(by('registry.k8s.io/ingress-nginx/controller:v1.15.1')).toBe("ingress-nginx's deploy.yaml")
  })

  it('cluster.yaml turns an add-on off, and refuses a choice it does not know in one line', () => {
    expect(addonChoices({ metricsServer: false }, 'c.yaml')[C.metricsServer]).toBe(false)
    expect(DEFAULT_ADDONS[C.ingressNginx]).toEqual({ expose: 'nodeport' })
    expect(() => addonChoices({ ingressNginx: { expose: 'loadbalancer' } }, 'c.yaml')).toThrow(
      /^c\.yaml: addons\.ingressNginx\.expose: "loadbalancer" is not allowed/,
    )
    expect(() => addonChoices({ metricServer: {} }, 'c.yaml')).toThrow(/unknown key "metricServer" \(did you mean "metricsServer"\?\)/)
    expect(() => addonChoices({ localPathProvisioner: { path: '../x' } }, 'c.yaml')).toThrow(/addons\.localPathProvisioner\.path/)
  })
})
