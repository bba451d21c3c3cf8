import { describe, expect, it } from 'vitest'
import { Sha256 } from '../../../bundle/digest.js'
import { SYSTEMD_RUNNING } from '../../../installer/node-paths.js'
import { preflight, preflightFindings } from '../../../installer/phases/preflight.js'
import { MemoryHost, memoryBundle, memoryContext } from '../../support/memory-host.js'

const node = (commands?: string[]) =>
  new MemoryHost(
    { [SYSTEMD_RUNNING]: '', '/etc/resolv.conf': 'nameserver 10.0.0.53\n', '/sys/fs/cgroup/cgroup.controllers': 'cpu memory\n' },
    commands && new Set(commands),
  )
const by = (f: { check: string }[], check: string) => f.filter((x) => x.check === check)

describe('preflight reads facts, never the machine it runs on', () => {
  it('a user that is not root, a CPU the bundle is not for, a hostname that does not resolve', async () => {
    const f = await preflightFindings(
      memoryContext(node(), await memoryBundle(), { facts: { euid: 1000, arch: 'arm64', hostname: 'k8s-x', hostnameResolves: false } }),
    )
    expect(by(f, 'root')).toEqual([{ level: 'fail', check: 'root', found: 'running as uid 1000', fix: 'run it with sudo: sudo ./install ...' }])
    expect(by(f, 'architecture')[0]).toMatchObject({ level: 'fail', found: 'this machine is arm64, the bundle is for amd64' })
    expect(by(f, 'hostname')[0]).toMatchObject({ level: 'warn', found: 'k8s-x does not resolve' })
    await expect(preflight.plan(memoryContext(node(), await memoryBundle(), { facts: { euid: 1000 } }))).rejects.toThrow(/^preflight: running as uid 1000/)
  })

  it('a dry run is not refused for want of root; the same node as root has neither failure', async () => {
    const dry = await preflightFindings(memoryContext(node(), await memoryBundle(), { dryRun: true, facts: { euid: 1000 } }))
    expect(by(dry, 'root')).toEqual([])
    const root = await preflightFindings(memoryContext(node(), await memoryBundle(), { facts: { euid: 0, arch: 'amd64' } }))
    expect([...by(root, 'root'), ...by(root, 'architecture'), ...by(root, 'hostname')]).toEqual([])
  })

  it('commands kubeadm needs: missing is a failure naming both ways out, unless the bundle brings them', async () => {
    const bare = node(['systemctl', 'modprobe', 'sysctl', 'swapoff', 'ip', 'iptables', 'mount', 'nsenter', 'tc', 'touch'])
    bare.files.set('/etc/os-release', { data: Buffer.from('ID=debian\nVERSION_ID="12"\n'), mode: 0o644 })
    const without = await preflightFindings(memoryContext(bare, await memoryBundle()))
    expect(by(without, 'host commands')[0]).toMatchObject({
      level: 'fail',
      found: 'conntrack not found: kubeadm stops with [ERROR FileExisting-conntrack]',
      fix: expect.stringMatching(/this node runs debian-12; the bundle carries OS packages for no release\. Either:\n {2}1\. .*\n {2}2\. install conntrack/),
    })
    expect(by(without, 'host commands (optional)')[0]?.found).toBe('socat, ebtables, ethtool not found')
    const deb = {
      release: 'debian-12',
      platform: 'linux/amd64' as const,
      version: '1',
      url: 'https://deb.debian.org/x.deb',
      integrity: Sha256.of('x'),
      size: 1,
    }
    const bringing = await memoryBundle(
      {},
      'linux/amd64',
      ['conntrack', 'socat', 'ebtables', 'ethtool'].map((name) => ({ ...deb, name, file: `${name}.deb` })),
    )
    const withPackages = await preflightFindings(memoryContext(bare, bringing))
    expect([...by(withPackages, 'host commands'), ...by(withPackages, 'host commands (optional)')]).toEqual([])
  })
})
