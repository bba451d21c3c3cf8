import { execSync } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir, hostname } from 'node:os'
import { join } from 'node:path'
import yaml from 'js-yaml'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { patchCalico } from '../../installer/calico.js'
import { clusterConfig } from '../../installer/cluster-config.js'
import { caCertHash, parseJoinFile } from '../../installer/kubeadm.js'
import { REFERENCE } from '../support/world.js'

let dir: string
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ka-cluster-'))
})
afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

describe('the CA certificate hash', () => {
  it("matches the field notes' openssl pipeline for a certificate made with openssl", async () => {
    for (const key of ['rsa:2048', 'ec -pkeyopt ec_paramgen_curve:P-256']) {
      const crt = join(dir, `ca-${key.slice(0, 2)}.crt`)
      execSync(`openssl req -x509 -newkey ${key} -nodes -keyout ${crt}.key -out ${crt} -days 1 -subj /CN=kubernetes 2>/dev/null`)
      // What the field notes run (for RSA; `openssl pkey` does the same for any key type).
      const conv = key.startsWith('rsa') ? 'openssl rsa -pubin -outform der' : 'openssl pkey -pubin -outform der'
      const want = execSync(`openssl x509 -pubkey -in ${crt} | ${conv} 2>/dev/null | openssl dgst -sha256 -hex | sed 's/^.* //'`, { encoding: 'utf8' }).trim()
      expect(caCertHash(await readFile(crt, 'utf8'))).toBe(`sha256:${want}`)
    }
  })
})

describe("Calico's manifest", () => {
  it('is patched on the real v3.28.0 manifest: pool CIDR, autodetection, never pull, every document kept', async () => {
    const original = await readFile(join(REFERENCE, 'calico-v3.28.0.yaml'), 'utf8')
    expect(original).toMatch(/# - name: CALICO_IPV4POOL_CIDR\n\s+#\s+value: "192\.168\.0\.0\/16"/)
    const docs = (yaml.loadAll(original) as unknown[]).filter(Boolean)
    expect(docs).toHaveLength(31)
    const { text, documents } = patchCalico(original, '10.244.0.0/16', 'interface=eth0')
    expect(documents).toBe(31)
    const out = (yaml.loadAll(text) as Record<string, any>[]).filter(Boolean)
    expect(out.map((d) => `${d.kind}/${d.metadata?.name}`)).toEqual(docs.map((d: any) => `${d.kind}/${d.metadata?.name}`))
    const node = out.find((d) => d.kind === 'DaemonSet' && d.metadata.name === 'calico-node')!
    const env = node.spec.template.spec.containers.find((c: any) => c.name === 'calico-node').env
    expect(env).toContainEqual({ name: 'CALICO_IPV4POOL_CIDR', value: '10.244.0.0/16' })
    expect(env).toContainEqual({ name: 'IP_AUTODETECTION_METHOD', value: 'interface=eth0' })
    const containers = out.flatMap((d) => [...(d.spec?.template?.spec?.containers ?? []), ...(d.spec?.template?.spec?.initContainers ?? [])])
    expect(containers.map((c: any) => c.image).sort()).toEqual([
      'docker.io/calico/cni:v3.28.0',
      'docker.io/calico/cni:v3.28.0',
      'docker.io/calico/kube-controllers:v3.28.0',
      'docker.io/calico/node:v3.28.0',
      'docker.io/calico/node:v3.28.0',
    ])
    expect(containers.length).toBeGreaterThan(0)
    expect(containers.every((c: any) => c.imagePullPolicy === 'Never')).toBe(true)
    // Without autodetection, none is added; a CIDR already set is replaced, not doubled.
    const again = patchCalico(patchCalico(original, '10.1.0.0/16').text, '10.2.0.0/16').text
    const env2 = (yaml.loadAll(again) as any[]).filter(Boolean).find((d) => d.metadata?.name === 'calico-node' && d.kind === 'DaemonSet').spec.template.spec
      .containers[0].env
    expect(env2.filter((e: any) => e.name === 'CALICO_IPV4POOL_CIDR')).toEqual([{ name: 'CALICO_IPV4POOL_CIDR', value: '10.2.0.0/16' }])
    expect(env2.some((e: any) => e.name === 'IP_AUTODETECTION_METHOD')).toBe(false)
  })
})

describe('cluster configuration', () => {
  const nets = ['192.0.2.0/24']
  const err = (fn: () => unknown) => {
    try {
      fn()
    } catch (e) {
      return `${(e as { code: string }).code} ${(e as Error).message}`
    }
    return 'no error'
  }
  it('fills defaults and lets flags win over the file', () => {
    const { config, warnings } = clusterConfig(
      'podSubnet: 10.250.0.0/16\nnodes: { host1: { nodeName: k8s01 } }\n',
      'cluster.yaml',
      { podSubnet: '10.244.0.0/16' },
      { networks: nets, hostname: 'host1' },
    )
    expect(config).toMatchObject({
      nodeName: 'k8s01',
      podSubnet: '10.244.0.0/16',
      serviceSubnet: '10.96.0.0/12',
      dnsDomain: 'cluster.local',
      clusterName: 'kubernetes',
      tokenTTL: '24h',
    })
    expect(warnings).toEqual([])
  })
  it('refuses each bad input with one line, EUSAGE', () => {
    expect(err(() => clusterConfig(undefined, 'flags', { podSubnet: '10.244.0.0/33' }, { networks: nets, hostname: hostname() }))).toMatch(
      /^EUSAGE pod subnet "10\.244\.0\.0\/33" is not an IPv4 network in CIDR form; /,
    )
    expect(err(() => clusterConfig(undefined, 'flags', { podSubnet: '10.244.1.0/16' }, { networks: nets, hostname: hostname() }))).toMatch(/no host bits set/)
    expect(err(() => clusterConfig(undefined, 'flags', { podSubnet: '10.96.0.0/16' }, { networks: nets, hostname: hostname() }))).toMatch(
      /^EUSAGE the pod subnet 10\.96\.0\.0\/16 and the service subnet 10\.96\.0\.0\/12 overlap/,
    )
    expect(err(() => clusterConfig(undefined, 'flags', { podSubnet: '192.0.0.0/16' }, { networks: nets, hostname: hostname() }))).toMatch(
      /^EUSAGE the pod subnet 192\.0\.0\.0\/16 overlaps this node's network 192\.0\.2\.0\/24/,
    )
    expect(err(() => clusterConfig(undefined, 'flags', { podSubnet: '10.244.0.0/25' }, { networks: nets, hostname: hostname() }))).toMatch(
      /smaller than the \/24 each node takes/,
    )
    expect(err(() => clusterConfig(undefined, 'flags', { controlPlaneEndpoint: 'https://k8s:6443' }, { networks: nets, hostname: hostname() }))).toMatch(
      /^EUSAGE control-plane endpoint "https:\/\/k8s:6443" is not host:port/,
    )
    expect(err(() => clusterConfig(undefined, 'flags', { controlPlaneEndpoint: 'k8s-api' }, { networks: nets, hostname: hostname() }))).toMatch(
      /is not host:port/,
    )
    expect(err(() => clusterConfig('podSubnt: 10.244.0.0/16\n', 'cluster.yaml', {}, { networks: nets, hostname: hostname() }))).toMatch(
      /^EUSAGE cluster\.yaml: unknown key "podSubnt" \(did you mean "podSubnet"\?\)/,
    )
    expect(err(() => clusterConfig(undefined, 'flags', { advertiseAddress: '192.0.2.300' }, { networks: nets, hostname: hostname() }))).toMatch(
      /advertise address "192\.0\.2\.300" is not an IPv4 address/,
    )
  })
  it('warns, and says why, about a pod subnet that holds one node', () => {
    const { warnings } = clusterConfig(undefined, 'flags', { podSubnet: '10.244.0.0/24' }, { networks: nets, hostname: hostname() })
    expect(warnings).toEqual([expect.stringMatching(/holds one node's pods only: every node takes a \/24 of it, so a second node gets no pod addresses/)])
  })
  it('refuses an expired join file, saying how to get a fresh one', () => {
    const file = `kind: JoinFile\nrole: worker\nendpoint: 192.0.2.10:6443\ntoken: abcdef.0123456789abcdef\nexpires: '2026-01-01T00:00:00Z'\ncaCertHash: sha256:${'a'.repeat(64)}\n`
    expect(err(() => parseJoinFile(file, 'join/worker.yaml', Date.parse('2026-06-01T00:00:00Z')))).toMatch(
      /^EUSAGE join\/worker\.yaml: its token expired at 2026-01-01T00:00:00Z; on the master run `sudo \.\/install join-command`/,
    )
  })
})
