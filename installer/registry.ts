import { X509Certificate } from 'node:crypto'
import yaml from 'js-yaml'
import { didYouMean } from '../bundle/text.js'
import { bad } from './config-checks.js'
import { parseIPv4 } from './cidr.js'
import { CONTAINERD_CERTS_DIR, REGISTRY_DIR, REGISTRY_STORAGE } from './node-paths.js'
import type { Finding } from './checks.js'
import type { Context } from './plan.js'

/**
 * A registry inside the air gap (cluster.yaml `registry:`): one node runs it, every node's
 * containerd trusts it, by its name and as a mirror of the registries named.
 */
export interface RegistryConfig {
  /** The host name (or node name) of the node that runs it. */
  node: string
  /** host:port every node pulls by: the name in its certificate and the folder under certs.d. */
  name: string
  /** The registry node's address, for /etc/hosts on every node (left out: DNS resolves the name). */
  address?: string
  /** Registries it stands in for (docker.io, ...): a pull of docker.io/library/x goes to it. */
  mirrors: string[]
  /** Where it keeps the images, on the registry node. */
  storage: string
  /** Basic auth: a user made at install; pulls and pushes without it are refused. */
  auth: boolean
}

const KEYS = ['node', 'name', 'address', 'mirrors', 'storage', 'auth']
const HOST = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$/
const HOST_PORT = /^([a-z0-9.-]+):(\d{1,5})$/

/** Reads cluster.yaml's `registry:`; every problem is one line naming the key. */
export function registryConfig(raw: unknown, source: string): RegistryConfig | undefined {
  if (raw === undefined || raw === null) return undefined
  const example = 'e.g. registry: { node: k8s01, name: registry.cluster.local:5000, address: 192.168.1.11, mirrors: [docker.io] }'
  if (typeof raw !== 'object' || Array.isArray(raw)) bad(`${source}: registry must be a mapping`, example)
  const o = raw as Record<string, unknown>
  for (const k of Object.keys(o))
    if (!KEYS.includes(k)) bad(`${source}: registry: unknown key ${JSON.stringify(k)}${didYouMean(k, KEYS)}`, `the keys are ${KEYS.join(', ')}`)
  const text = (k: string): string | undefined => (o[k] === undefined ? undefined : String(o[k]))
  const node = text('node')
  if (!node || !HOST.test(node.toLowerCase())) bad(`${source}: registry.node must name the node that runs it`, example)
  const name = text('name')?.toLowerCase()
  const hp = name ? HOST_PORT.exec(name) : null
  if (!name || !hp || !HOST.test(hp[1]!) || Number(hp[2]) < 1 || Number(hp[2]) > 65535)
    bad(`${source}: registry.name ${JSON.stringify(o.name)} is not host:port`, 'write it like registry.cluster.local:5000 (the name every node pulls by)')
  const address = text('address')
  if (address !== undefined && parseIPv4(address) === undefined)
    bad(`${source}: registry.address ${JSON.stringify(address)} is not an IPv4 address`, "give the registry node's address")
  const mirrors = o.mirrors === undefined ? [] : o.mirrors
  if (!Array.isArray(mirrors) || !mirrors.every((m) => typeof m === 'string' && HOST.test(m) && m.includes('.')))
    bad(`${source}: registry.mirrors must list registry host names`, 'e.g. mirrors: [docker.io, registry.k8s.io, quay.io]')
  const storage = text('storage') ?? REGISTRY_STORAGE
  if (!/^\/[-\w./]*$/.test(storage) || storage.split('/').includes('..') || storage === '/')
    bad(`${source}: registry.storage ${JSON.stringify(storage)} is not an absolute folder`, `e.g. ${REGISTRY_STORAGE}`)
  if (o.auth !== undefined && typeof o.auth !== 'boolean') bad(`${source}: registry.auth must be true or false`, 'auth: true makes a user and a password')
  return { node: node!.toLowerCase(), name: name!, ...(address ? { address } : {}), mirrors: mirrors as string[], storage, auth: o.auth === true }
}

/** host and port of the registry's name. */
export const hostPort = (c: Pick<RegistryConfig, 'name'>): { host: string; port: number } => {
  const [, host, port] = HOST_PORT.exec(c.name)!
  return { host: host!, port: Number(port) }
}

/** The registry's files on its node. */
export const REGISTRY_FILES = {
  config: `${REGISTRY_DIR}/config.yml`,
  caCert: `${REGISTRY_DIR}/ca.crt`,
  caKey: `${REGISTRY_DIR}/ca.key`,
  cert: `${REGISTRY_DIR}/tls.crt`,
  key: `${REGISTRY_DIR}/tls.key`,
  csr: `${REGISTRY_DIR}/tls.csr`,
  extensions: `${REGISTRY_DIR}/tls.ext`,
  htpasswd: `${REGISTRY_DIR}/htpasswd`,
  credentials: `${REGISTRY_DIR}/credentials`,
} as const

/** The user basic auth makes. */
export const REGISTRY_USER = 'kube-airgap'

/**
 * distribution's configuration: what never names a path. Where it listens, its TLS files, its
 * storage and its htpasswd file are in the static pod's environment (REGISTRY_*), which
 * overrides this file key by key (distribution's configuration/parser.go), so that one
 * manifest says every path the registry uses.
 */
export function registryConfigFile(): string {
  return yaml.dump(
    {
      version: 0.1,
      log: { fields: { service: 'registry' } },
      storage: { filesystem: {}, delete: { enabled: true }, cache: { blobdescriptor: 'inmemory' } },
      http: { headers: { 'X-Content-Type-Options': ['nosniff'] } },
    },
    { lineWidth: -1 },
  )
}

/** The static pod that runs the registry on its node (host network: it listens on the name's port of every address). */
export function registryPod(c: RegistryConfig, image: string): string {
  const { port } = hostPort(c)
  const env: Record<string, string> = {
    REGISTRY_HTTP_ADDR: `0.0.0.0:${port}`,
    REGISTRY_HTTP_TLS_CERTIFICATE: REGISTRY_FILES.cert,
    REGISTRY_HTTP_TLS_KEY: REGISTRY_FILES.key,
    REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: c.storage,
    ...(c.auth
      ? { REGISTRY_AUTH: 'htpasswd', REGISTRY_AUTH_HTPASSWD_REALM: 'kube-airgap registry', REGISTRY_AUTH_HTPASSWD_PATH: REGISTRY_FILES.htpasswd }
      : {}),
  }
  const pod = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'kube-airgap-registry', namespace: 'kube-system', labels: { app: 'kube-airgap-registry' } },
    spec: {
      hostNetwork: true,
      priorityClassName: 'system-node-critical',
      containers: [
        {
          name: 'registry',
          image,
          imagePullPolicy: 'Never',
          command: ['registry', 'serve', REGISTRY_FILES.config],
          env: Object.entries(env).map(([name, value]) => ({ name, value })),
          livenessProbe: { tcpSocket: { port }, initialDelaySeconds: 10, periodSeconds: 10 },
          volumeMounts: [
            { name: 'config', mountPath: REGISTRY_DIR, readOnly: true },
            { name: 'data', mountPath: c.storage },
          ],
        },
      ],
      volumes: [
        { name: 'config', hostPath: { path: REGISTRY_DIR, type: 'Directory' } },
        { name: 'data', hostPath: { path: c.storage, type: 'DirectoryOrCreate' } },
      ],
    },
  }
  return `# kube-airgap's registry: ./install registry wrote this; the kubelet runs it.\n${yaml.dump(pod, { lineWidth: -1 })}`
}

/** The certificate's extensions: a server certificate for the name (and the address, when given). */
export function serverExtensions(c: RegistryConfig): string {
  const { host } = hostPort(c)
  const sans = [parseIPv4(host) !== undefined ? `IP:${host}` : `DNS:${host}`, ...(c.address ? [`IP:${c.address}`] : [])]
  return `basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=${[...new Set(sans)].join(',')}\n`
}

/**
 * containerd's hosts.toml for one registry name (its own, or one it mirrors): pulls go to the
 * registry, trusting the CA beside the file (a relative `ca` is read from the file's folder:
 * remotes/docker/config/hosts.go, makeAbsPath). No fallback upstream: in an air gap it would
 * only turn "not found" into a time-out.
 */
export function hostsToml(c: RegistryConfig, forName: string): string {
  const url = `https://${c.name}`
  const own = forName === c.name
  return `# kube-airgap: ${own ? 'the registry inside the air gap' : `${forName} pulled from the registry inside the air gap`} (./install registry)\nserver = "${url}"\n\n[host."${url}"]\n  capabilities = ["pull", "resolve"${own ? ', "push"' : ''}]\n  ca = "ca.crt"\n`
}

/** The folders under certs.d the trust writes: the registry's own name, and each registry it mirrors. */
export const trustedNames = (c: RegistryConfig): string[] => [...new Set([c.name, ...c.mirrors])]

export const certsDirOf = (name: string): string => `${CONTAINERD_CERTS_DIR}/${name}`

/** The repository and tag an image is pushed under: its path without the registry (docker.io/library/nginx:1.25 -> library/nginx, 1.25). */
export function pushTarget(image: string): { repository: string; tag?: string } {
  const at = image.indexOf('/')
  const path = image.slice(at + 1)
  const m = /^(.*?)(?::([\w][\w.-]{0,127}))?(?:@sha256:[0-9a-f]{64})?$/.exec(path)!
  return { repository: m[1]!, ...(m[2] ? { tag: m[2] } : {}) }
}

/** ./install registry makes the registry's certificate again when fewer days than this are left (doctor warns from then on). */
export const REGISTRY_CERT_RENEW_DAYS = 90

/** Doctor, on the registry's node: how long its certificate has left. */
export async function registryFindings(ctx: Context): Promise<Finding[]> {
  const pem = await ctx.host.readText(REGISTRY_FILES.cert)
  if (!pem) return []
  let until: Date
  try {
    until = new Date(new X509Certificate(pem).validTo)
  } catch {
    return [
      {
        level: 'fail',
        check: 'registry certificate',
        found: `${REGISTRY_FILES.cert} is not a certificate`,
        fix: 'sudo ./install registry --config cluster.yaml makes it again',
      },
    ]
  }
  const days = Math.floor((until.getTime() - ctx.facts.now()) / 86_400_000)
  const found = `${REGISTRY_FILES.cert} valid until ${until.toISOString().slice(0, 10)} (${days} days)`
  if (days >= REGISTRY_CERT_RENEW_DAYS) return [{ level: 'ok', check: 'registry certificate', found }]
  return [
    {
      level: days < 30 ? 'fail' : 'warn',
      check: 'registry certificate',
      found,
      fix: 'sudo ./install registry --config cluster.yaml on this node makes it again (the CA stays: nodes keep trusting it)',
    },
  ]
}
