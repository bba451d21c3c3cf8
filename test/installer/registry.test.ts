import { describe, expect, it } from 'vitest'
import { hostsToml, pushTarget, registryConfig, serverExtensions, trustedNames } from '../../installer/registry.js'

describe("cluster.yaml's registry", () => {
  const c = registryConfig({ node: 'K8S01', name: 'Registry.cluster.local:5000', address: '192.168.1.11', mirrors: ['docker.io'], auth: true }, 'c.yaml')!

  it('reads the node, name, address, mirrors, storage and auth, with defaults', () => {
    expect(c).toEqual({
      node: 'k8s01',
      name: 'registry.cluster.local:5000',
      address: '192.168.1.11',
      mirrors: ['docker.io'],
      storage: '/var/lib/kube-airgap/registry',
      auth: true,
    })
    expect(registryConfig(undefined, 'c.yaml')).toBeUndefined()
    expect(trustedNames(c)).toEqual(['registry.cluster.local:5000', 'docker.io'])
  })

  it('refuses each mistake in one line naming the key', () => {
    const bad = (o: unknown) => () => registryConfig(o, 'c.yaml')
    expect(bad({ node: 'k8s01', name: 'registry.local' })).toThrow(/^c\.yaml: registry\.name "registry\.local" is not host:port/)
    expect(bad({ name: 'r:5000' })).toThrow(/^c\.yaml: registry\.node must name the node that runs it/)
    expect(bad({ node: 'a', name: 'r:5000', adress: '1.2.3.4' })).toThrow(/unknown key "adress" \(did you mean "address"\?\)/)
    expect(bad({ node: 'a', name: 'r:5000', mirrors: 'docker.io' })).toThrow(/registry\.mirrors must list registry host names/)
    expect(bad({ node: 'a', name: 'r:5000', storage: '/data/../etc' })).toThrow(/registry\.storage/)
    expect(bad({ node: 'a', name: 'r:5000', auth: 'yes' })).toThrow(/registry\.auth must be true or false/)
  })

  it("names the certificate for the registry's name and address; containerd's hosts.toml trusts the CA beside it, with no fallback upstream", () => {
    expect(serverExtensions(c)).toContain('subjectAltName=DNS:registry.cluster.local,IP:192.168.1.11')
    const own = hostsToml(c, c.name)
    expect(own).toContain('server = "https://registry.cluster.local:5000"')
    expect(own).toContain('capabilities = ["pull", "resolve", "push"]')
    expect(own).toContain('ca = "ca.crt"')
    const mirror = hostsToml(c, 'docker.io')
    expect(mirror).toContain('server = "https://registry.cluster.local:5000"')
    expect(mirror).toContain('capabilities = ["pull", "resolve"]')
  })

  it('pushes an image at its path without the registry', () => {
    expect(pushTarget('docker.io/library/nginx:1.25')).toEqual({ repository: 'library/nginx', tag: '1.25' })
    expect(pushTarget('registry.k8s.io/ingress-nginx/controller:v1.15.1')).toEqual({ repository: 'ingress-nginx/controller', tag: 'v1.15.1' })
    expect(pushTarget(`quay.io/org/app@sha256:${'a'.repeat(64)}`)).toEqual({ repository: 'org/app' })
  })
})
