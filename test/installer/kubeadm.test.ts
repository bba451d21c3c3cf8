import yaml from 'js-yaml'
import { describe, expect, it } from 'vitest'
import { clusterConfig } from '../../installer/cluster-config.js'
import { initConfig, joinConfig, type JoinFile } from '../../installer/kubeadm.js'

/** The kubeadm configuration the installer writes, as kubeadm's own API types define it (v1beta3 up to 1.30, v1beta4 from 1.31). */
const facts = { networks: [], hostname: 'node' }
const join: JoinFile = {
  role: 'worker',
  endpoint: '192.0.2.10:6443',
  token: 'abcdef.0123456789abcdef',
  expires: '2030-01-01T00:00:00.000Z',
  caCertHash: `sha256:${'a'.repeat(64)}`,
}
const registration = (text: string) => (yaml.loadAll(text)[0] as { nodeRegistration: Record<string, unknown> }).nodeRegistration

describe('nodeRegistration', () => {
  it("a node that names its address (a multi-NIC worker too) gets the kubelet's node-ip, in each API version's shape", () => {
    const named = clusterConfig(undefined, 'flags', { advertiseAddress: '192.0.2.21', nodeName: 'w1' }, facts).config
    expect(registration(joinConfig('1.29.3', named, join, undefined)).kubeletExtraArgs).toEqual({ 'node-ip': '192.0.2.21' })
    expect(registration(joinConfig('1.31.4', named, join, undefined)).kubeletExtraArgs).toEqual([{ name: 'node-ip', value: '192.0.2.21' }])
    expect(registration(initConfig('1.29.3', named, '192.0.2.21', join.token, 'f'.repeat(64))).kubeletExtraArgs).toEqual({ 'node-ip': '192.0.2.21' })
    // No address named: the kubelet's own choice, as before.
    const unnamed = clusterConfig(undefined, 'flags', { nodeName: 'w1' }, facts).config
    expect(registration(joinConfig('1.29.3', unnamed, join, undefined)).kubeletExtraArgs).toBeUndefined()
  })
})
