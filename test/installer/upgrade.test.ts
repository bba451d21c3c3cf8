import { describe, expect, it } from 'vitest'
import { parseVersion } from '../../bundle/version.js'
import { unstagedNodes } from '../../installer/stage.js'
import type { ClusterNode } from '../../installer/cluster-view.js'
import { type SkewInput, skewRefusal } from '../../installer/skew.js'

const v = (s: string) => parseVersion(s)!
const node = (name: string, kubelet: string, controlPlane = false): ClusterNode => ({
  name,
  kubelet: v(kubelet),
  controlPlane,
  ready: true,
  unschedulable: false,
})

/** A cluster at 1.29.3 (two masters, a worker) upgraded to 1.30.11 from the first master, unless the case says otherwise. */
const input = (over: Partial<SkewInput> = {}): SkewInput => ({
  kind: 'first-master',
  name: 'm1',
  from: v('1.29.3'),
  target: v('1.30.11'),
  cluster: { apiServer: v('1.29.3'), nodes: [node('m1', '1.29.3', true), node('m2', '1.29.3', true), node('w1', '1.29.3')] },
  arch: 'amd64',
  bundleArch: 'amd64',
  ...over,
})

describe('the version-skew rules of an upgrade', () => {
  it('let the first master go one minor or one patch up, and every node after it', () => {
    expect(skewRefusal(input())).toBeUndefined()
    expect(skewRefusal(input({ target: v('1.29.15') }))).toBeUndefined()
    const after = { apiServer: v('1.30.11'), nodes: [node('m1', '1.30.11', true), node('m2', '1.29.3', true), node('w1', '1.29.3')] }
    expect(skewRefusal(input({ kind: 'control-plane', name: 'm2', cluster: after }))).toBeUndefined()
    const masters = { ...after, nodes: [node('m1', '1.30.11', true), node('m2', '1.30.11', true), node('w1', '1.29.3')] }
    expect(skewRefusal(input({ kind: 'worker', name: 'w1', cluster: masters }))).toBeUndefined()
  })

  it('refuse another platform, a downgrade and a skipped minor', () => {
    expect(skewRefusal(input({ arch: 'arm64' }))).toBe('this node is arm64 and the bundle is for amd64: use the linux/arm64 bundle of v1.30.11')
    expect(skewRefusal(input({ from: v('1.30.11'), target: v('1.29.3') }))).toMatch(
      /^this node runs v1\.30\.11 and the bundle is v1\.29\.3: a downgrade is refused/,
    )
    expect(skewRefusal(input({ target: v('1.31.2') }))).toBe(
      'v1.29.3 to v1.31.2 skips a minor version: kubeadm upgrades one minor at a time; upgrade the whole cluster with a 1.30.x bundle first, then with this one',
    )
    expect(skewRefusal(input({ from: v('1.28.9'), target: v('1.31.2') }))).toMatch(
      /skips minor versions: .* with a 1\.29\.x bundle, then a 1\.30\.x bundle first/,
    )
  })

  it('refuse workers and other masters before the control plane, so that no kubelet is newer than the API server', () => {
    expect(skewRefusal(input({ kind: 'worker', name: 'w1' }))).toMatch(
      /^the control plane is at v1\.29\.3, older than this bundle's v1\.30\.11: masters go first/,
    )
    expect(skewRefusal(input({ kind: 'control-plane', name: 'm2' }))).toMatch(/^the control plane is at v1\.29\.3/)
    const half = { apiServer: v('1.30.11'), nodes: [node('m1', '1.30.11', true), node('m2', '1.29.3', true), node('w1', '1.29.3')] }
    expect(skewRefusal(input({ kind: 'worker', name: 'w1', cluster: half }))).toBe(
      'master m2 (v1.29.3) is not at v1.30.11 yet: masters go first; run sudo ./install upgrade there, then here',
    )
  })

  it('refuse a first master that would leave another master or a kubelet too far behind', () => {
    const masterBehind = { apiServer: v('1.30.11'), nodes: [node('m1', '1.30.11', true), node('m2', '1.29.3', true)] }
    expect(skewRefusal(input({ from: v('1.30.11'), target: v('1.31.2'), cluster: masterBehind }))).toMatch(
      /^master m2 \(v1\.29\.3\) would be more than one minor behind v1\.31\.2: finish upgrading every master to 1\.30 first/,
    )
    const oldWorker = { apiServer: v('1.30.11'), nodes: [node('m1', '1.30.11', true), node('w1', '1.27.4')] }
    expect(skewRefusal(input({ from: v('1.30.11'), target: v('1.31.2'), cluster: oldWorker }))).toMatch(
      /^node w1 \(v1\.27\.4\) would be more than three minors behind the API server at v1\.31\.2: upgrade it first$/,
    )
  })
})

describe("which nodes hold the next bundle's images before the first master is upgraded", () => {
  const staged = (n: ClusterNode, id: string): ClusterNode => ({ ...n, staged: id })
  it('names every other node neither marked with this image set nor at the target already', () => {
    const view = {
      apiServer: v('1.29.3'),
      nodes: [
        node('m1', '1.29.3', true),
        staged(node('m2', '1.29.3', true), 'v1.30.11-aaaa'),
        staged(node('w1', '1.29.3'), 'v1.30.11-bbbb'),
        node('w2', '1.30.11'),
      ],
    }
    expect(unstagedNodes(view, 'm1', 'v1.30.11-aaaa', v('1.30.11')).map((n) => n.name)).toEqual(['w1'])
  })
})
