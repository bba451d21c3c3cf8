import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { clusterConfig, unfitConfig } from '../../installer/cluster-config.js'
import { REPO } from '../support/fake-upstream.js'

/** cluster.yaml and the flags, judged before a file is written: no node, no disk. */
const facts = { hostname: 'K8S02', networks: ['192.168.1.0/24'] }
const read = (text: string | undefined, flags: Record<string, string> = {}) => clusterConfig(text, 'cluster.yaml', flags, facts)
const refusal = (text: string | undefined, flags: Record<string, string> = {}) => {
  try {
    read(text, flags)
    return 'accepted'
  } catch (e) {
    return (e as Error).message
  }
}

describe('clusterConfig', () => {
  it('defaults everything from the node when there is no file', () => {
    expect(read(undefined)).toEqual({
      config: {
        nodeName: 'k8s02',
        podSubnet: '10.244.0.0/16',
        serviceSubnet: '10.96.0.0/12',
        dnsDomain: 'cluster.local',
        clusterName: 'kubernetes',
        extraHosts: [],
        tokenTTL: '24h',
        selinux: 'permissive',
        firewalld: 'open',
      },
      warnings: [],
      listed: new Map(),
    })
  })

  it("takes this node's own entry of the per-node map, and flags over the file", () => {
    const text = 'podSubnet: 10.50.0.0/16\nnodes:\n  k8s02: { nodeName: worker-2, advertiseAddress: 192.168.1.12 }\n  k8s03: { nodeName: worker-3 }\n'
    const { config } = read(text, { podSubnet: '10.60.0.0/16' })
    expect(config).toMatchObject({ nodeName: 'worker-2', advertiseAddress: '192.168.1.12', podSubnet: '10.60.0.0/16' })
  })

  it('refuses a per-node key at the top, naming the flag and the map to use instead', () => {
    expect(refusal('nodeName: k8s01\n')).toMatch(/nodeName is per node, and the same cluster.yaml goes to every node.*--node-name.*nodes: \{ <hostname>/)
  })

  it('names an unknown key with the nearest known one, and a value of the wrong kind', () => {
    expect(refusal('podSubnett: 10.1.0.0/16\n')).toMatch(/unknown key "podSubnett" \(did you mean "podSubnet"\?\)/)
    expect(refusal('podSubnet: [10.1.0.0/16]\n')).toMatch(/podSubnet must be text, found a list/)
  })

  it("refuses subnets that overlap each other, a reserved block or this node's network, and warns of one too small for two nodes", () => {
    expect(refusal(undefined, { podSubnet: '10.96.0.0/16' })).toMatch(/the pod subnet 10.96.0.0\/16 and the service subnet 10.96.0.0\/12 overlap/)
    expect(refusal(undefined, { podSubnet: '127.1.0.0/16' })).toMatch(/overlaps 127.0.0.0\/8 \(loopback\)/)
    expect(refusal(undefined, { serviceSubnet: '192.168.0.0/16' })).toMatch(/the service subnet 192.168.0.0\/16 overlaps this node's network 192.168.1.0\/24/)
    expect(refusal(undefined, { podSubnet: '10.244.0.0/25' })).toMatch(/smaller than the \/24 each node takes/)
    expect(read(undefined, { podSubnet: '10.244.0.0/24' }).warnings[0]).toMatch(/holds one node's pods only/)
  })

  it('refuses an address, endpoint, TTL, taint or hosts entry that is not one', () => {
    expect(refusal(undefined, { advertiseAddress: '127.0.0.1' })).toMatch(/advertise address 127.0.0.1 is loopback/)
    expect(refusal(undefined, { controlPlaneEndpoint: 'api' })).toMatch(/is not host:port/)
    expect(refusal('tokenTTL: 2000h\n')).toMatch(/tokenTTL 2000h is out of range/)
    expect(refusal('taints: [{ key: dedicated, effect: Sometimes }]\n')).toMatch(/taints\[0\] needs a key and an effect/)
    expect(refusal('extraHosts: [{ ip: 192.168.1.12, names: ["k8s02 evil"] }]\n')).toMatch(/"k8s02 evil" is not a host name/)
    expect(refusal('selinux: enforcing\n')).toMatch(/selinux "enforcing" is neither permissive nor keep/)
  })
})

describe('unfitConfig: cluster.yaml written for other machines', () => {
  const example = readFileSync(join(REPO, 'manifests', 'cluster.example.yaml'), 'utf8')
  const here = { hostname: 'k8s05', networks: ['10.0.0.0/24'] }
  const judge = (text: string, node: { advertise?: string; firstMaster: boolean }, f = here) => {
    const { config, listed } = clusterConfig(text, 'cluster.yaml', {}, f)
    return unfitConfig(config, listed, f, { advertise: node.advertise, firstMaster: node.firstMaster })
  }

  it('the example used as it is on a first master elsewhere: its endpoint is another node, and none of its nodes is this one', () => {
    expect(judge(example, { advertise: '10.0.0.5', firstMaster: true })).toEqual([
      "controlPlaneEndpoint 192.168.1.11:6443 is k8s01's address (nodes:), not this node (k8s05, 10.0.0.5), and kubeadm init runs on the first master: edit controlPlaneEndpoint in cluster.yaml (one master: leave it out), or run this on k8s01",
      "nodes: in cluster.yaml names k8s01, k8s02, none of them this node (k8s05, 10.0.0.5) nor on its networks (10.0.0.0/24): edit nodes: for your machines' hostnames and addresses (./install config prints this node's)",
    ])
  })

  it('fits the machines it names: k8s01 at 192.168.1.11 as the first master, k8s02 as a worker', () => {
    const lan = { networks: ['192.168.1.0/24'] }
    expect(judge(example, { advertise: '192.168.1.11', firstMaster: true }, { ...lan, hostname: 'k8s01' })).toEqual([])
    expect(judge(example, { advertise: '192.168.1.12', firstMaster: false }, { ...lan, hostname: 'k8s02' })).toEqual([])
  })

  it('an endpoint off every network of the first master is refused; a load balancer on its network, or a name, is not judged', () => {
    expect(judge('controlPlaneEndpoint: 172.16.9.9:6443\n', { advertise: '10.0.0.5', firstMaster: true })[0]).toMatch(
      /^controlPlaneEndpoint 172\.16\.9\.9:6443 is on none of the networks of this node \(k8s05, 10\.0\.0\.5\) \(10\.0\.0\.0\/24\): edit controlPlaneEndpoint/,
    )
    expect(judge('controlPlaneEndpoint: 10.0.0.100:6443\n', { advertise: '10.0.0.5', firstMaster: true })).toEqual([])
    expect(judge('controlPlaneEndpoint: k8s-api.example:6443\n', { advertise: '10.0.0.5', firstMaster: true })).toEqual([])
    expect(judge('controlPlaneEndpoint: 172.16.9.9:6443\n', { advertise: '10.0.0.5', firstMaster: false })).toEqual([])
  })
})
