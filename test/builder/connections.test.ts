import { describe, expect, it } from 'vitest'
import { Connections } from '../../builder/download/connections.js'

describe('Connections', () => {
  it('serves the largest waiting request first, and of equal ones the one first in the bundle', async () => {
    const pool = new Connections(1, 1 << 20)
    const held = await pool.acquire(1)
    const granted: string[] = []
    const wait = (name: string, priority: number, order?: string) =>
      pool.acquire(priority, undefined, order).then((release) => {
        granted.push(name)
        release()
      })
    // Arrival order is not the order served: sizes the lock does not pin rank equal, and the
    // packer takes files in the bundle's order.
    const all = [wait('unplaced', 5), wait('files/kubelet', 5, 'files/kubelet'), wait('files/calicoctl', 5, 'files/calicoctl'), wait('big', 9, 'images/x')]
    held()
    await Promise.all(all)
    expect(granted).toEqual(['big', 'files/calicoctl', 'files/kubelet', 'unplaced'])
  })
})

describe('Connections.reserve', () => {
  it('an urgent request takes a kept connection at once, though requests the reserve holds back are waiting', async () => {
    const pool = new Connections(2, 1 << 20)
    const unreserve = pool.reserve(1)
    const file = await pool.acquire(5)
    let second = false
    const queued = pool.acquire(5).then((release) => {
      second = true
      return release
    })
    let urgent = false
    const manifest = pool.acquire(Number.POSITIVE_INFINITY).then((release) => {
      urgent = true
      return release
    })
    await new Promise((r) => setImmediate(r))
    // The kept connection goes to the manifest; the second file still waits for the reserve.
    expect({ urgent, second }).toEqual({ urgent: true, second: false })
    ;(await manifest)()
    unreserve()
    await queued
    expect(second).toBe(true)
    file()
  })
})
