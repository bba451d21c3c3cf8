import { readFile } from 'node:fs/promises'
import { describe, expect, it } from 'vitest'
import { calicoWire } from '../../installer/calico.js'

const reference = () => readFile(new URL('../fixtures/reference/calico-v3.28.0.yaml', import.meta.url), 'utf8')

describe("what Calico's manifest puts between nodes (the firewalld openings follow it)", () => {
  it("reads upstream's calico.yaml as IP-in-IP over BGP", async () => {
    expect(calicoWire(await reference())).toEqual({ ipip: true, vxlan: false, bgp: true })
  })

  it('reads a VXLAN manifest (pool VXLAN Always, IP-in-IP Never, backend vxlan) as VXLAN alone, as Calico documents the switch', async () => {
    const vxlan = (await reference())
      .replace(/calico_backend: "bird"/, 'calico_backend: "vxlan"')
      .replace(/(- name: CALICO_IPV4POOL_IPIP\n\s+value: )"Always"/, '$1"Never"')
      .replace(/(- name: CALICO_IPV4POOL_VXLAN\n\s+value: )"Never"/, '$1"Always"')
    expect(calicoWire(vxlan)).toEqual({ ipip: false, vxlan: true, bgp: false })
    expect(calicoWire(vxlan.replace(/(- name: CALICO_IPV4POOL_VXLAN\n\s+value: )"Always"/, '$1"CrossSubnet"')).vxlan).toBe(true)
  })

  it('assumes upstream defaults without a manifest', () => {
    expect(calicoWire(undefined)).toEqual({ ipip: true, vxlan: false, bgp: true })
  })
})
