import { hostname } from 'node:os'
import { openBundle } from '../../bundle/open.js'
import { clusterConfig, type ClusterFlags } from '../../installer/cluster-config.js'
import type { NodeFacts } from '../../installer/facts.js'
import { DryRunHost, NodeHost, type Host } from '../../installer/host.js'
import type { Context } from '../../installer/plan.js'
import { OS_RELEASE_FILES } from '../../installer/node-paths.js'
import { osRelease } from '../../bundle/os-release.js'

/** Facts of a made-up node: root, amd64, this machine's hostname, no networks, the real clock unless `now` is given. */
export const testFacts = (over: Partial<NodeFacts> = {}): NodeFacts => ({
  euid: 0,
  arch: 'amd64',
  hostname: hostname(),
  hostnameResolves: true,
  networks: [],
  now: Date.now,
  ...over,
})

/** A context for in-process phases and checks, as the CLI's resolveContext builds it (no verification). */
export async function testContext(o: {
  root: string
  bundle: string
  containerdAddress: string
  role?: 'master' | 'worker'
  hostCommands?: string
  flags?: ClusterFlags
  advertise?: string
  facts?: Partial<NodeFacts>
  dryRun?: boolean
  host?: Host
}): Promise<Context> {
  const node = o.host ?? new NodeHost(o.root, o.hostCommands ? { hostCommands: o.hostCommands } : {})
  // The release and family, as gatherFacts reads them through the Host.
  const os = (await node.readText(OS_RELEASE_FILES[0]!)) ?? (await node.readText(OS_RELEASE_FILES[1]!))
  const facts = testFacts({ ...(os === undefined ? {} : osRelease(os)), ...o.facts })
  const usb = new NodeHost(o.bundle, { noLinks: true })
  return {
    host: o.dryRun ? new DryRunHost(node) : node,
    usb: o.dryRun ? new DryRunHost(usb) : usb,
    bundle: await openBundle(o.bundle),
    facts,
    cluster: { config: clusterConfig(undefined, 'flags', o.flags ?? {}, facts).config, advertise: o.advertise ?? '', waitMs: 1000 },
    options: { role: o.role ?? 'worker', dryRun: !!o.dryRun, containerdAddress: o.containerdAddress, json: false, verbose: false },
    say: () => {},
  }
}
