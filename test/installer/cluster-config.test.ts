import { DEFAULT_ADDONS } from '../../installer/addons.js'
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
        addons: DEFAULT_ADDONS,
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

describe('the local endpoint (endpoint: local)', () => {
  const three =
    'nodes:\n  m01: { role: master, advertiseAddress: 192.168.1.11 }\n  m02: { role: master, advertiseAddress: 192.168.1.12, nodeName: cp-2 }\n  m03: { role: master, advertiseAddress: 192.168.1.13 }\n  w01: { advertiseAddress: 192.168.1.21 }\n'
  const masters = [
    { name: 'm01', address: '192.168.1.11' },
    { name: 'cp-2', address: '192.168.1.12' },
    { name: 'm03', address: '192.168.1.13' },
  ]

  it("is the default for several masters and no endpoint of the operator's own: 127.0.0.1:7443 to every master; one master, or a controlPlaneEndpoint, is not", () => {
    const { config } = read(three)
    expect(config.controlPlaneEndpoint).toBe('127.0.0.1:7443')
    expect(config.localEndpoint).toEqual({ masters })
    expect(read(`${three}endpoint: local\n`).config.localEndpoint).toEqual({ masters })
    expect(read(`${three}controlPlaneEndpoint: k8s-api.example:6443\n`).config).toMatchObject({ controlPlaneEndpoint: 'k8s-api.example:6443' })
    expect(read(`${three}controlPlaneEndpoint: k8s-api.example:6443\n`).config.localEndpoint).toBeUndefined()
    expect(read(three, { controlPlaneEndpoint: 'lb.example:6443' }).config.localEndpoint).toBeUndefined()
    // The fleet's flags: its inventory's masters, over the file's.
    expect(read(three, { masters: 'a1=192.168.1.51,a2=192.168.1.52' }).config.localEndpoint).toEqual({
      masters: [
        { name: 'a1', address: '192.168.1.51' },
        { name: 'a2', address: '192.168.1.52' },
      ],
    })
    expect(read(undefined, { endpoint: 'local', masters: 'a1=192.168.1.51' }).config.controlPlaneEndpoint).toBe('127.0.0.1:7443')
    expect(read('nodes:\n  m01: { role: master, advertiseAddress: 192.168.1.11 }\n').config.localEndpoint).toBeUndefined()
    // The proxy's 127.0.0.1 is on no network and nobody's address: not an example left unedited.
    const { config: c, listed } = read(three)
    expect(unfitConfig(c, listed, { hostname: 'm01', networks: ['192.168.1.0/24'] }, { advertise: '192.168.1.11', firstMaster: true })).toEqual([])
  })

  it('is refused, naming the key, when it cannot work', () => {
    expect(refusal(`${three}endpoint: vip\n`)).toMatch(/^cluster\.yaml: endpoint "vip" is not known; write endpoint: local/)
    expect(refusal(`${three}endpoint: local\ncontrolPlaneEndpoint: lb.example:6443\n`)).toMatch(
      /endpoint: local and a controlPlaneEndpoint \(lb\.example:6443\) are both given; keep one/,
    )
    expect(refusal('endpoint: local\nnodes:\n  w01: { advertiseAddress: 192.168.1.21 }\n')).toMatch(
      /endpoint: local names no master; give each master as nodes:/,
    )
    expect(refusal('nodes:\n  m01: { role: master, advertiseAddress: 192.168.1.11 }\n  m02: { role: master }\n')).toMatch(
      /nodes\.m02 is a master with no advertiseAddress; .*give nodes\.m02\.advertiseAddress/,
    )
    expect(refusal('nodes:\n  m01: { role: boss }\n')).toMatch(/nodes\.m01\.role "boss" is neither master nor worker/)
    expect(refusal(three, { endpoint: 'vip' })).toMatch(/^--endpoint "vip" is not known/)
    expect(refusal(undefined, { masters: 'm01=192.168.1.11,m02' })).toMatch(/^--masters: "m02" is not name=address; write it like m01=192\.0\.2\.11/)
    expect(refusal(undefined, { masters: 'M_1=192.168.1.11,m02=192.168.1.12' })).toMatch(/^--masters: "m_1" is not a valid node name/)
    expect(refusal(`${three}controlPlaneEndpoint: lb.example:6443\n`, { endpoint: 'local' })).toMatch(/both given/)
    expect(refusal('nodes:\n  m01: { rol: master }\n')).toMatch(/nodes\.m01: unknown key "rol" \(did you mean "role"\?\)/)
  })
})

describe('the virtual IP (endpoint: { vip })', () => {
  const masters = 'nodes:\n  m01: { role: master, advertiseAddress: 192.168.1.11 }\n  m02: { role: master, advertiseAddress: 192.168.1.12 }\n'

  it('makes vip:6443 the control-plane endpoint, with the masters it moves between', () => {
    const { config } = read(`${masters}endpoint: { vip: 192.168.1.100, interface: ens192 }\n`)
    expect(config).toMatchObject({
      controlPlaneEndpoint: '192.168.1.100:6443',
      vip: {
        address: '192.168.1.100',
        iface: 'ens192',
        masters: [
          { name: 'm01', address: '192.168.1.11' },
          { name: 'm02', address: '192.168.1.12' },
        ],
      },
    })
    expect(config.localEndpoint).toBeUndefined()
    expect(read(undefined, { endpoint: 'vip=192.168.1.100', masters: 'm01=192.168.1.11' }).config.vip).toEqual({
      address: '192.168.1.100',
      masters: [{ name: 'm01', address: '192.168.1.11' }],
    })
    // Its address is on the first master's network: not an example left unedited.
    const { config: c, listed } = read(`${masters}endpoint: { vip: 192.168.1.100 }\n`)
    expect(unfitConfig(c, listed, { hostname: 'm01', networks: ['192.168.1.0/24'] }, { advertise: '192.168.1.11', firstMaster: true })).toEqual([])
    expect(unfitConfig(c, listed, { hostname: 'm01', networks: ['10.0.0.0/24'] }, { advertise: '10.0.0.11', firstMaster: true })[0]).toMatch(
      /controlPlaneEndpoint 192\.168\.1\.100:6443 is on none of the networks of this node/,
    )
  })

  it('is refused, naming the key, when it cannot work', () => {
    expect(refusal(`${masters}endpoint: { vip: 192.168.1.11 }\n`)).toMatch(/the virtual IP 192\.168\.1\.11 is a master's own address/)
    expect(refusal(`${masters}endpoint: { vip: 300.1.1.1 }\n`)).toMatch(/endpoint: the virtual IP "300\.1\.1\.1" is not an IPv4 address/)
    expect(refusal(`${masters}endpoint: { vip: 127.0.0.5 }\n`)).toMatch(/the virtual IP 127\.0\.0\.5 is loopback/)
    expect(refusal(`${masters}endpoint: { vip: 192.168.1.100, iface: eth0 }\n`)).toMatch(/endpoint: unknown key "iface"; write endpoint: local/)
    expect(refusal('endpoint: { vip: 192.168.1.100 }\n')).toMatch(/endpoint: \{ vip \} names no master/)
    expect(refusal(`${masters}endpoint: { vip: 192.168.1.100 }\ncontrolPlaneEndpoint: lb:6443\n`)).toMatch(
      /endpoint: \{ vip \} and a controlPlaneEndpoint \(lb:6443\) are both given/,
    )
    expect(refusal(masters, { endpoint: 'vip:192.168.1.100' })).toMatch(
      /^--endpoint "vip:192\.168\.1\.100" is not known; give --endpoint local, or --endpoint vip=/,
    )
  })
})
