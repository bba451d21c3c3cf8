import { describe, expect, it } from 'vitest'
import { FSTAB, FSTAB_BACKUP, MODULES_LOAD, PROC_SWAPS, procSys, SYSCTL_CONF } from '../../../installer/node-paths.js'
import { kernel } from '../../../installer/phases/kernel.js'
import { runPhases } from '../../../installer/plan.js'
import { MemoryHost, memoryBundle, memoryContext } from '../../support/memory-host.js'

const FSTAB_TEXT = 'UUID=1 / ext4 defaults 0 1\n/swap.img none swap sw 0 0\n'
const freshNode = () =>
  new MemoryHost({
    [FSTAB]: FSTAB_TEXT,
    [PROC_SWAPS]: 'Filename Type Size Used Priority\n/swap.img file 2097148 0 -2\n',
    [procSys('net.ipv4.ip_forward')]: '0\n',
  })

describe('the kernel phase, on a node in memory', () => {
  it('loads the modules, sets the sysctls, turns swap off now and at boot; a second run changes nothing', async () => {
    const host = freshNode()
    const ctx = memoryContext(host, await memoryBundle())
    const first = await kernel.plan(ctx)
    expect(first.length).toBeGreaterThan(4)
    expect(first.filter((s) => s.done)).toEqual([])
    await runPhases(ctx, [kernel], () => {})
    expect(host.changes).toEqual(
      expect.arrayContaining([
        `write ${MODULES_LOAD}`,
        'run modprobe overlay',
        'run modprobe br_netfilter',
        `write ${SYSCTL_CONF}`,
        'run sysctl --system',
        'run swapoff -a',
        `write ${FSTAB_BACKUP}`,
        `write ${FSTAB}`,
      ]),
    )
    expect(await host.readText(FSTAB)).toMatch(/^# swap disabled by kube-airgap .*: \/swap\.img none swap sw 0 0$/m)
    expect(await host.readText(FSTAB_BACKUP)).toBe(FSTAB_TEXT)

    host.changes.length = 0
    const second = await kernel.plan(ctx)
    expect(second.length).toBe(first.length)
    expect(second.filter((s) => !s.done).map((s) => s.title)).toEqual([])
    await runPhases(ctx, [kernel], () => {})
    expect(host.changes).toEqual([])
  })

  it('keeps the first fstab backup: an edited fstab never overwrites it', async () => {
    const host = freshNode()
    host.files.set(FSTAB_BACKUP, { data: Buffer.from('the original\n'), mode: 0o644 })
    await runPhases(memoryContext(host, await memoryBundle()), [kernel], () => {})
    expect(await host.readText(FSTAB_BACKUP)).toBe('the original\n')
    expect(host.changes).not.toContain(`write ${FSTAB_BACKUP}`)
  })

  it('in a dry run, plans every step and changes nothing', async () => {
    const host = freshNode()
    const reports = await runPhases(memoryContext(host, await memoryBundle(), { dryRun: true }), [kernel], () => {})
    expect(reports.length).toBeGreaterThan(4)
    expect(reports.every((r) => r.status === 'would do')).toBe(true)
    expect(host.changes).toEqual([])
    expect(await host.readText(FSTAB)).toBe(FSTAB_TEXT)
  })
})
