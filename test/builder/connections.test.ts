import { describe, expect, it } from 'vitest'
import { Connections } from '../../builder/connections.js'

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
