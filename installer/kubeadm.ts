import { createHash, randomBytes, X509Certificate } from 'node:crypto'
import yaml from 'js-yaml'
import type { ClusterConfig } from './cluster-config.js'
import { KaError } from '../bundle/errors.js'
import { loadYaml } from '../bundle/yaml.js'
import { KUBEADM_REPOSITORY } from '../bundle/closed-world.js'
import { DEFAULT_CONTAINERD_SOCKET } from './node-paths.js'
import { LOCAL_ENDPOINT } from './apiserver-proxy.js'

/** The kubeadm config API the locked kubeadm reads: v1beta3 up to 1.30, v1beta4 from 1.31. */
export function kubeadmApi(kubernetes: string): string {
  const minor = Number(kubernetes.split('.')[1])
  return `kubeadm.k8s.io/${minor >= 31 ? 'v1beta4' : 'v1beta3'}`
}

/** A bootstrap token: `[a-z0-9]{6}.[a-z0-9]{16}`, as kubeadm makes them. */
export function newToken(): string {
  const abc = 'abcdefghijklmnopqrstuvwxyz0123456789'
  const pick = (n: number) => [...randomBytes(n)].map((b) => abc[b % abc.length]).join('')
  return `${pick(6)}.${pick(16)}`
}

/** The key kubeadm encrypts the uploaded control-plane certificates with (32 bytes, hex). */
export const newCertificateKey = (): string => randomBytes(32).toString('hex')

/**
 * `--discovery-token-ca-cert-hash` the way kubeadm computes it: sha256 of the CA
 * certificate's public key in DER SubjectPublicKeyInfo form (what the field notes' openssl
 * pipeline prints).
 */
export function caCertHash(pem: string): string {
  const der = new X509Certificate(pem).publicKey.export({ type: 'spki', format: 'der' })
  return `sha256:${createHash('sha256').update(der).digest('hex')}`
}

const nodeRegistration = (api: string, c: ClusterConfig, taints?: ClusterConfig['taints']) => ({
  name: c.nodeName,
  criSocket: `unix://${DEFAULT_CONTAINERD_SOCKET}`,
  // Everything is in the bundle and imported: kubeadm must never try to pull.
  imagePullPolicy: 'Never',
  ...(taints ? { taints } : {}),
  // A node that names its address registers with it (a multi-NIC node's kubelet would take the
  // default route's): the kubelet's node-ip, a map up to v1beta3, a list of {name, value} from
  // v1beta4 (kubeadm's v1beta4 changelog: structured extra arguments, NodeRegistrationOptions.KubeletExtraArgs too).
  ...(c.advertiseAddress
    ? { kubeletExtraArgs: api.endsWith('/v1beta4') ? [{ name: 'node-ip', value: c.advertiseAddress }] : { 'node-ip': c.advertiseAddress } }
    : {}),
})

/** The names and addresses the API server's certificate carries beyond kubeadm's own, for the endpoint the bundle provides. */
function certSANs(c: ClusterConfig): string[] | undefined {
  const masters = (c.localEndpoint ?? c.vip)?.masters
  if (!masters) return undefined
  const front = c.localEndpoint ? [LOCAL_ENDPOINT.host, 'localhost'] : [c.vip!.address]
  return [...new Set([...front, ...masters.map((m) => m.address), ...masters.map((m) => m.name)])]
}

/** InitConfiguration + ClusterConfiguration + KubeletConfiguration for the first master. */
export function initConfig(kubernetes: string, c: ClusterConfig, advertise: string, token: string, certificateKey: string): string {
  const api = kubeadmApi(kubernetes)
  const docs = [
    {
      apiVersion: api,
      kind: 'InitConfiguration',
      bootstrapTokens: [{ token, ttl: c.tokenTTL, usages: ['signing', 'authentication'], groups: ['system:bootstrappers:kubeadm:default-node-token'] }],
      certificateKey,
      nodeRegistration: nodeRegistration(api, c, c.taints),
      localAPIEndpoint: { advertiseAddress: advertise, bindPort: 6443 },
    },
    {
      apiVersion: api,
      kind: 'ClusterConfiguration',
      kubernetesVersion: `v${kubernetes}`,
      clusterName: c.clusterName,
      controlPlaneEndpoint: c.controlPlaneEndpoint ?? `${advertise}:6443`,
      // Behind the local endpoint a client reaches the API server as 127.0.0.1 (its own proxy), behind
      // a virtual IP as that address; an operator's kubectl outside the cluster may use any master.
      ...(certSANs(c) ? { apiServer: { certSANs: certSANs(c) } } : {}),
      // The bundle's images carry registry.k8s.io names at exactly these versions.
      imageRepository: KUBEADM_REPOSITORY,
      networking: { dnsDomain: c.dnsDomain, serviceSubnet: c.serviceSubnet, podSubnet: c.podSubnet },
    },
    // kubelet on the systemd cgroup driver, as containerd is (SystemdCgroup = true).
    { apiVersion: 'kubelet.config.k8s.io/v1beta1', kind: 'KubeletConfiguration', cgroupDriver: 'systemd' },
  ]
  return docs.map((d) => yaml.dump(d, { lineWidth: -1 })).join('---\n')
}

/** The file the master writes for the next nodes (mode 0600: it holds a secret). */
export interface JoinFile {
  role: 'worker' | 'control-plane'
  endpoint: string
  token: string
  /** When the master made the token, by its clock. */
  issued?: string
  expires: string
  caCertHash: string
  certificateKey?: string
  certificateKeyExpires?: string
  /** The names the cluster's nodes had when the file was written: a joining node must not take one. */
  nodes?: string[]
}

export function formatJoinFile(j: JoinFile): string {
  const next =
    j.role === 'worker' ? 'sudo ./install --role worker --join-file join/worker.yaml' : 'sudo ./install --role master --join-file join/control-plane.yaml'
  return `# kube-airgap join file. It holds a secret: keep it 0600 and only on the USB stick.\n# On the next node: ${next}\n${yaml.dump({ apiVersion: 'kube-airgap/v1', kind: 'JoinFile', ...j }, { lineWidth: -1 })}`
}

/** A join file, checked for form; unless `now` is null (a node joined already), also for a token still valid and a clock not behind the master's. */
export function parseJoinFile(text: string, source: string, now: number | null = Date.now()): JoinFile {
  const notOne = (why: string): never => {
    throw new KaError('EUSAGE', `${source}: ${why}; use the join/worker.yaml or join/control-plane.yaml the master wrote`)
  }
  const o = loadYaml(text, source) as Record<string, unknown> | null
  if (typeof o !== 'object' || o === null || Array.isArray(o) || o.kind !== 'JoinFile') return notOne('not a kube-airgap join file')
  // Every field checked for its type and form: a join file travels on a stick, and a worker
  // trusts the endpoint and CA hash it names.
  const field = (key: string, re: RegExp, what: string, optional = false): string | undefined => {
    const v = o[key]
    if (v === undefined && optional) return undefined
    if (typeof v !== 'string' || !re.test(v)) return notOne(`${key} is not ${what}`)
    return v
  }
  const role = field('role', /^(worker|control-plane)$/, 'worker or control-plane') as JoinFile['role']
  const endpoint = field('endpoint', /^[A-Za-z0-9.-]+:\d{1,5}$/, 'host:port')!
  const token = field('token', /^[a-z0-9]{6}\.[a-z0-9]{16}$/, 'a bootstrap token')!
  const caCertHash = field('caCertHash', /^sha256:[0-9a-f]{64}$/, 'sha256:<64 hex>')!
  const expires = field('expires', /^\d{4}-\d{2}-\d{2}T[\d:.]+Z$/, 'a timestamp')!
  const issued = field('issued', /^\d{4}-\d{2}-\d{2}T[\d:.]+Z$/, 'a timestamp', true)
  const certificateKey = field('certificateKey', /^[0-9a-f]{64}$/, 'a 64-hex certificate key', role === 'worker')
  const certificateKeyExpires = field('certificateKeyExpires', /^\d{4}-\d{2}-\d{2}T[\d:.]+Z$/, 'a timestamp', role === 'worker')
  const nodes = o.nodes
  if (nodes !== undefined && (!Array.isArray(nodes) || !nodes.every((n) => typeof n === 'string' && /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(n))))
    notOne('nodes is not a list of node names')
  if (Number.isNaN(Date.parse(expires)) || (certificateKeyExpires && Number.isNaN(Date.parse(certificateKeyExpires)))) notOne('expires is not a timestamp')
  const j: JoinFile = {
    role,
    endpoint,
    token,
    ...(issued ? { issued } : {}),
    expires,
    caCertHash,
    ...(certificateKey ? { certificateKey } : {}),
    ...(certificateKeyExpires ? { certificateKeyExpires } : {}),
    ...(nodes ? { nodes: nodes as string[] } : {}),
  }
  if (now === null) return j
  // A node whose clock lags the master's fails later with x509 "not yet valid": say so now.
  if (j.issued && Date.parse(j.issued) - now > CLOCK_SLACK_MS) {
    throw new KaError(
      'EUSAGE',
      `${source} was written on the master at ${j.issued}, but this node's clock says ${new Date(now).toISOString()}: its clock is behind by ${Math.round((Date.parse(j.issued) - now) / 60_000)} minutes or more, and kubeadm join would fail with x509 "certificate is not yet valid"; set the time (timedatectl set-time '...', or chronyd against a server inside the network) and run again`,
    )
  }
  if (Date.parse(j.expires) <= now) {
    throw new KaError(
      'EUSAGE',
      `${source}: its token expired at ${j.expires}; on the master run \`sudo ./install join-command\` to write fresh join files, then copy join/ here again`,
    )
  }
  if (j.role === 'control-plane' && j.certificateKeyExpires && Date.parse(j.certificateKeyExpires) <= now) {
    throw new KaError(
      'EUSAGE',
      `${source}: its certificate key expired at ${j.certificateKeyExpires} (kubeadm keeps uploaded certificates 2 hours); on the master run \`sudo ./install join-command\`, then copy join/ here again`,
    )
  }
  return j
}

/** How far a node's clock may lag the master's before joining is refused. */
export const CLOCK_SLACK_MS = 5 * 60_000

/** JoinConfiguration for a worker, or (with a certificate key) an extra control plane. */
export function joinConfig(kubernetes: string, c: ClusterConfig, j: JoinFile, advertise: string | undefined): string {
  const api = kubeadmApi(kubernetes)
  const doc = {
    apiVersion: api,
    kind: 'JoinConfiguration',
    discovery: { bootstrapToken: { apiServerEndpoint: j.endpoint, token: j.token, caCertHashes: [j.caCertHash] } },
    nodeRegistration: nodeRegistration(api, c, j.role === 'worker' ? undefined : c.taints),
    ...(j.role === 'control-plane'
      ? { controlPlane: { certificateKey: j.certificateKey, ...(advertise ? { localAPIEndpoint: { advertiseAddress: advertise, bindPort: 6443 } } : {}) } }
      : {}),
  }
  return yaml.dump(doc, { lineWidth: -1 })
}
