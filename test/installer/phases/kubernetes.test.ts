import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { BIN_DIR, KUBELET_DROPIN, KUBELET_UNIT } from '../../../installer/node-paths.js'
import { kubernetes } from '../../../installer/phases/kubernetes.js'
import { runPhases } from '../../../installer/plan.js'
import { MemoryHost, memoryBundle, memoryContext } from '../../support/memory-host.js'

const binaries = () => ({
  kubeadm: Buffer.from('#!/bin/sh\necho kubeadm\n'),
  kubelet: Buffer.from('#!/bin/sh\necho kubelet\n'),
  kubectl: Buffer.from('#!/bin/sh\necho kubectl\n'),
})

describe('the kubernetes phase, on a node in memory', () => {
  it('installs the pinned binaries 0755, the kubelet unit and drop-in, enables kubelet; a second run changes nothing', async () => {
    const host = new MemoryHost()
    const ctx = memoryContext(host, await memoryBundle(binaries()))
    await runPhases(ctx, [kubernetes], () => {})
    for (const [name, data] of Object.entries(binaries())) expect(host.files.get(`${BIN_DIR}/${name}`), name).toEqual({ data, mode: 0o755 })
    expect(await host.readText(KUBELET_UNIT)).toMatch(/ExecStart=\/usr\/local\/bin\/kubelet/)
    expect(await host.exists(KUBELET_DROPIN)).toBe(true)
    expect(host.changes).toEqual(expect.arrayContaining(['run systemctl daemon-reload', 'run systemctl enable kubelet']))
    host.changes.length = 0
    expect((await kubernetes.plan(ctx)).filter((s) => !s.done).map((s) => s.title)).toEqual([])
    await runPhases(ctx, [kubernetes], () => {})
    expect(host.changes).toEqual([])
  })

  it('a binary changed in the bundle after it was opened is refused as it is written, and nothing lands', async () => {
    const host = new MemoryHost()
    const bundle = await memoryBundle(binaries())
    await writeFile(join(bundle.dir, 'kubelet'), 'a swapped kubelet\n')
    await expect(runPhases(memoryContext(host, bundle), [kubernetes], () => {})).rejects.toMatchObject({ code: 'EINTEGRITY' })
    expect(host.files.has(`${BIN_DIR}/kubelet`)).toBe(false)
  })
})
