import type { Io } from '../../bundle/report.js'
import { overlaps, parseCidr } from '../cidr.js'
import { clusterConfig } from '../cluster-config.js'
import type { Flags } from '../context.js'
import { gatherFacts } from '../facts.js'
import { NodeHost } from '../host.js'

/** Pod subnets to offer, in order: the first that overlaps none of this node's networks. */
const POD_SUBNETS = ['10.244.0.0/16', '172.20.0.0/16', '10.200.0.0/16', '192.168.128.0/17']

/**
 * `./install config`: a commented cluster.yaml filled with what this node shows (its name,
 * the address kubeadm would announce, a pod subnet clear of its networks). It is checked the
 * way ./install will read it before it is printed, so what it prints is accepted.
 */
export async function configCommand(flags: Flags, io: Io): Promise<void> {
  const facts = await gatherFacts(new NodeHost(flags.root))
  const name = facts.hostname.toLowerCase()
  const address = flags.advertiseAddress ?? facts.defaultRouteAddress
  const pod = POD_SUBNETS.find((p) => !facts.networks.some((n) => overlaps(parseCidr(p)!, parseCidr(n)!))) ?? POD_SUBNETS[0]!
  const text = `# cluster.yaml for kube-airgap, written by \`./install config\` on ${name}.
# Use it with: sudo ./install --role master --config cluster.yaml (keep it outside the bundle folder).
# Every key is optional; flags win over this file. The same file goes to every node: add a
# line under nodes: for each. cluster.example.yaml in the bundle documents every key.

# What differs per node, by hostname: the address it announces${address ? '' : ' (none found: no default route; fill it in)'}.
nodes:
  ${name}: { advertiseAddress: ${address ?? '192.0.2.10'} }

# Where every node reaches the API: this node for one master; a load balancer or virtual IP
# in front of several.
controlPlaneEndpoint: ${address ?? '192.0.2.10'}:6443

# Pod addresses (each node takes a /24 of it). This node's networks: ${facts.networks.join(', ') || 'none found'};
# ${pod} overlaps none of them.
podSubnet: ${pod}

# Service addresses; must not overlap the pod subnet or the nodes' networks.
serviceSubnet: 10.96.0.0/12
`
  clusterConfig(text, 'the generated cluster.yaml', {}, facts)
  io.out(text)
}
