import { generateKeyPairSync, randomBytes, X509Certificate } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { request } from 'node:https'
import bcrypt from 'bcryptjs'
import { Sha256 } from '../../bundle/digest.js'
import { KaError } from '../../bundle/errors.js'
import { JOIN_REGISTRY_CA, JOIN_REGISTRY_CREDENTIALS } from '../../bundle/layout.js'
import { ETC_HOSTS, REGISTRY_POD } from '../node-paths.js'
import { etcHostsStep } from './cluster.js'
import { fileStep, writeAction, type Context, type Phase, type Step } from '../plan.js'
import { poll } from '../poll.js'
import {
  certsDirOf,
  hostPort,
  hostsToml,
  REGISTRY_CERT_RENEW_DAYS,
  REGISTRY_FILES as F,
  REGISTRY_USER,
  registryConfigFile,
  registryPod,
  serverExtensions,
  trustedNames,
  type RegistryConfig,
} from '../registry.js'

/** cluster.yaml's registry, or one line saying how to name it. */
export function registryOf(ctx: Context): RegistryConfig {
  const c = ctx.cluster.config.registry
  if (!c)
    throw new KaError(
      'EUSAGE',
      'cluster.yaml names no registry: add registry: { node: <the node that runs it>, name: registry.cluster.local:5000, address: <its address> } and give it with --config',
    )
  return c
}

/** Whether this node runs the registry: its host name or node name is cluster.yaml's registry.node. */
export const runsRegistry = (ctx: Context, c: RegistryConfig): boolean => [ctx.facts.hostname.toLowerCase(), ctx.cluster.config.nodeName].includes(c.node)

/** The registry image the bundle carries (docker.io/library/registry, the distribution project's). */
function registryImage(ctx: Context): string {
  const image = ctx.bundle.images.find((i) => /^docker\.io\/library\/registry:/.test(i.name))
  if (!image)
    throw new KaError(
      'EUSAGE',
      "this bundle carries no registry image: add docker.io/library/registry:2.8.3 to the manifest's images, run bundle lock and bundle build, and install that bundle (its images phase imports it)",
    )
  return image.name
}

const pem = (key: { export(o: { type: 'pkcs8'; format: 'pem' }): string | Buffer }) => key.export({ type: 'pkcs8', format: 'pem' }).toString()
const newKey = () => pem(generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey)

/** Whether the certificate at `cert` is for this registry's name and address, and signed by the CA at `ca`. */
function fits(cert: string | undefined, ca: string | undefined, c: RegistryConfig, now: number): boolean {
  if (!cert || !ca) return false
  try {
    const x = new X509Certificate(cert)
    const want = serverExtensions(c)
      .match(/subjectAltName=(.*)/)![1]!
      .split(',')
      .map((s) => s.replace(/^IP:/, 'IP Address:'))
    const have = (x.subjectAltName ?? '').split(', ')
    return (
      want.every((w) => have.includes(w)) &&
      x.verify(new X509Certificate(ca).publicKey) &&
      new Date(x.validTo).getTime() > now + REGISTRY_CERT_RENEW_DAYS * 86_400_000
    )
  } catch {
    return false
  }
}

/** The CA: the operator's (--ca-cert, --ca-key), or one made here the first time (ten years), kept after. */
async function caSteps(ctx: Context, own: { cert?: string; key?: string }): Promise<Step[]> {
  const { host } = ctx
  if (own.cert || own.key) {
    if (!own.cert || !own.key) throw new KaError('EUSAGE', '--ca-cert and --ca-key go together: the CA certificate and its key')
    const [cert, key] = await Promise.all([own.cert, own.key].map((f) => readFile(f, 'utf8').catch(() => undefined)))
    let isCa = false
    try {
      isCa = !!cert && new X509Certificate(cert).ca
    } catch {
      isCa = false
    }
    if (!isCa || !key?.includes('PRIVATE KEY'))
      throw new KaError('EUSAGE', `--ca-cert ${own.cert} and --ca-key ${own.key} must be a PEM CA certificate and its PEM private key`)
    return [
      await fileStep(ctx, `the registry's CA, the one given (${F.caCert})`, F.caCert, cert!),
      await fileStep(ctx, `its key (${F.caKey})`, F.caKey, key, 0o600),
    ]
  }
  if ((await host.exists(F.caCert)) && (await host.exists(F.caKey))) return [{ title: `the registry's CA (${F.caCert})`, done: true, actions: [] }]
  return [
    {
      title: `the registry's CA made (${F.caCert}, ten years)`,
      done: false,
      actions: [
        writeAction(F.caKey, newKey(), 0o600),
        {
          kind: 'run',
          argv: [
            'openssl',
            'req',
            '-x509',
            '-new',
            '-key',
            host.path(F.caKey),
            '-sha256',
            '-days',
            '3650',
            '-subj',
            '/CN=kube-airgap registry CA',
            '-out',
            host.path(F.caCert),
          ],
        },
      ],
    },
  ]
}

/** The registry's server certificate for its name and address, signed by the CA; made again when either changed or it nears its end. */
async function certSteps(ctx: Context, c: RegistryConfig): Promise<Step[]> {
  const { host } = ctx
  const done = fits(await host.readText(F.cert), await host.readText(F.caCert), c, ctx.facts.now())
  const p = (f: string) => host.path(f)
  const serial = `0x${randomBytes(16).toString('hex')}`
  return [
    {
      title: `the registry's certificate for ${c.name}${c.address ? ` and ${c.address}` : ''} (${F.cert}, two years)`,
      done,
      actions: [
        writeAction(F.key, newKey(), 0o600),
        writeAction(F.extensions, serverExtensions(c)),
        { kind: 'run', argv: ['openssl', 'req', '-new', '-key', p(F.key), '-subj', `/CN=${hostPort(c).host}`, '-out', p(F.csr)] },
        {
          kind: 'run',
          argv: [
            'openssl',
            'x509',
            '-req',
            '-in',
            p(F.csr),
            '-CA',
            p(F.caCert),
            '-CAkey',
            p(F.caKey),
            '-set_serial',
            serial,
            '-sha256',
            '-days',
            '730',
            '-extfile',
            p(F.extensions),
            '-out',
            p(F.cert),
          ],
        },
      ],
    },
  ]
}

/** Basic auth: a password made once, its bcrypt hash in distribution's htpasswd file, the pair for pushes. */
async function authSteps(ctx: Context, c: RegistryConfig): Promise<Step[]> {
  if (!c.auth) return []
  const kept = await ctx.host.readText(F.credentials)
  const password = kept?.startsWith(`${REGISTRY_USER}:`) ? kept.trim().slice(REGISTRY_USER.length + 1) : randomBytes(18).toString('base64url')
  const hashed = (await ctx.host.readText(F.htpasswd))?.trim().split(':')[1]
  const steps = [await fileStep(ctx, `the registry's user ${REGISTRY_USER} (${F.credentials})`, F.credentials, `${REGISTRY_USER}:${password}\n`, 0o600)]
  const fresh = !hashed || !bcrypt.compareSync(password, hashed)
  steps.push({
    title: `its password, hashed with bcrypt, for the registry (${F.htpasswd})`,
    done: !fresh,
    actions: fresh ? [writeAction(F.htpasswd, `${REGISTRY_USER}:${bcrypt.hashSync(password, 10)}\n`, 0o600)] : [],
  })
  return steps
}

/** What the registry answers at /v2/: 200, or 401 when it asks for credentials; undefined when it does not answer. */
export function registryAnswers(c: RegistryConfig, ca: string, connectTo?: string): Promise<number | undefined> {
  const { host, port } = hostPort(c)
  return new Promise((resolve) => {
    const req = request({ host: connectTo ?? host, port, path: '/v2/', servername: host, ca, timeout: 5000 }, (res) => {
      res.resume()
      resolve(res.statusCode)
    })
    req.on('error', () => resolve(undefined))
    req.on('timeout', () => req.destroy())
    req.end()
  })
}

/** Files for the next nodes, into the bundle folder (the stick): the CA, and with auth the credentials (0600). */
async function forNextNodes(ctx: Context, c: RegistryConfig, ca: string, credentials: string | undefined): Promise<Step[]> {
  const out: Step[] = []
  for (const [rel, text, mode] of [[JOIN_REGISTRY_CA, ca, 0o644], ...(c.auth && credentials ? [[JOIN_REGISTRY_CREDENTIALS, credentials, 0o600]] : [])] as [
    string,
    string,
    number,
  ][]) {
    const now = await ctx.usb.fileState(`/${rel}`)
    out.push({
      title: `${rel} for the other nodes (copy the bundle folder to them)`,
      done: !!now && now.sha256.equals(Sha256.of(text)) && now.mode === mode,
      on: ctx.usb,
      actions: [writeAction(`/${rel}`, text, mode)],
    })
  }
  return out
}

/**
 * The registry, on the node cluster.yaml names: distribution's `registry` from the bundle's
 * image as a static pod (the kubelet keeps it running; no package to install on any OS
 * family), TLS from a CA made here (or the operator's), basic auth when asked, its images on
 * cluster.yaml's storage path; then the CA (and credentials) into the bundle folder for the
 * other nodes. On any other node it does nothing: registry-trust follows.
 */
export function registryPhase(own: { cert?: string; key?: string } = {}): Phase {
  return {
    name: 'registry',
    summary: "the registry inside the air gap, on cluster.yaml's registry.node: CA, certificate, basic auth, its static pod; waits until it answers",
    async plan(ctx) {
      const c = registryOf(ctx)
      if (!runsRegistry(ctx, c)) return []
      const image = registryImage(ctx)
      const openssl = await ctx.host.run(['openssl', 'version'], { changing: false })
      if (openssl.code !== 0)
        throw new KaError(
          'ESTEP',
          "openssl is not on this node, and the registry's certificate is made with it: add openssl to the manifest's packages.names (the bundle's OS packages), or run ./install registry on a node that has it",
        )
      const steps = [...(await caSteps(ctx, own)), ...(await certSteps(ctx, c)), ...(await authSteps(ctx, c))]
      steps.push(await fileStep(ctx, `the registry's configuration (${F.config})`, F.config, registryConfigFile()))
      steps.push(await fileStep(ctx, `the registry's static pod (${REGISTRY_POD}: ${image}, storage ${c.storage})`, REGISTRY_POD, registryPod(c, image), 0o600))
      steps.push({
        title: `the registry answers at https://${c.name}`,
        done: true,
        checkOnly: true,
        actions: [],
        check: async () => {
          const ca = (await ctx.host.readText(F.caCert)) ?? ''
          await poll(
            ctx,
            1000,
            async () => {
              const code = await registryAnswers(c, ca, c.address)
              return code === 200 || code === 401 ? undefined : `https://${c.name}/v2/ ${code ? `answers ${code}` : 'does not answer'}`
            },
            (last, s) => `${last} after ${s} s; look at its pod: crictl ps -a --name registry, then crictl logs <id>`,
          )
        },
      })
      return steps
    },
  }
}

/** After the registry phase: the files for the next nodes, once the CA (and credentials) exist. */
export const registryHandOver: Phase = {
  name: 'registry',
  summary: 'the CA (and the credentials) into the bundle folder for the other nodes',
  async plan(ctx) {
    const c = registryOf(ctx)
    if (!runsRegistry(ctx, c)) return []
    const ca = await ctx.host.readText(F.caCert)
    if (!ca) return [] // a dry run: nothing was made
    return forNextNodes(ctx, c, ca, await ctx.host.readText(F.credentials))
  },
}

/**
 * Every node's containerd trusts the registry: hosts.toml and the CA under certs.d for its
 * name and each registry it mirrors (containerd reads them at each pull; config_path is in
 * the installer's config.toml), and the name in /etc/hosts when cluster.yaml gives the address.
 */
export const registryTrust: Phase = {
  name: 'registry-trust',
  summary: "this node's containerd trusts the registry: certs.d/<name>/hosts.toml and its CA for the registry and each registry it mirrors; /etc/hosts",
  async plan(ctx) {
    const c = registryOf(ctx)
    const here = runsRegistry(ctx, c)
    const ca = here ? await ctx.host.readText(F.caCert) : await ctx.usb.readText(`/${JOIN_REGISTRY_CA}`)
    if (!ca) {
      if (ctx.options.dryRun) return [{ title: `the registry's CA trusted (after ./install registry on ${c.node})`, done: false, actions: [] }]
      throw new KaError(
        'EUSAGE',
        `${JOIN_REGISTRY_CA} is not in the bundle folder: run ./install registry on ${c.node} first (it writes it there), then bring the folder to this node`,
      )
    }
    let fingerprint: string
    try {
      const x = new X509Certificate(ca)
      if (!x.ca) throw new Error('not a CA')
      fingerprint = x.fingerprint256
    } catch {
      throw new KaError('EVERIFY', `${JOIN_REGISTRY_CA} is not a CA certificate: copy it again from ${c.node} (${F.caCert})`)
    }
    if (!here) ctx.say(`note  trusting the registry CA ${fingerprint} from ${JOIN_REGISTRY_CA}: compare it with what ./install registry printed on ${c.node}`)
    const steps: Step[] = []
    for (const name of trustedNames(c)) {
      steps.push(await fileStep(ctx, `${name}: the registry's CA (${certsDirOf(name)}/ca.crt)`, `${certsDirOf(name)}/ca.crt`, ca))
      steps.push(
        await fileStep(ctx, `${name}: pulled from https://${c.name} (${certsDirOf(name)}/hosts.toml)`, `${certsDirOf(name)}/hosts.toml`, hostsToml(c, name)),
      )
    }
    const { host } = hostPort(c)
    if (c.address && host !== c.address) steps.push(await etcHostsStep(ctx, `${host} in ${ETC_HOSTS}`, [`${c.address} ${host}`]))
    if (here) ctx.say(`note  the registry's CA: ${fingerprint}`)
    return steps
  },
}
