import { X509Certificate } from 'node:crypto'
import yaml from 'js-yaml'
import type { Finding } from './checks.js'
import { KUBELET_PKI, KUBERNETES_DIR, PKI_DIR } from './node-paths.js'
import type { Context } from './plan.js'

/**
 * The certificates that decide when a kubeadm cluster stops: kubeadm's own, as
 * `kubeadm certs check-expiration` lists them (leaf certificates for one year from init,
 * the CAs for ten), and the kubelet's. The usual way an air-gapped cluster dies: the API
 * server stops answering 365 days after `kubeadm init`.
 */
interface CertSource {
  name: string
  /** A PEM file, or a kubeconfig whose user embeds its certificate. */
  path: string
  kubeconfig?: boolean
  renewedBy: 'kubeadm' | 'ca' | 'kubelet'
}

const pki = (name: string, renewedBy: CertSource['renewedBy'] = 'kubeadm'): CertSource => ({ name, path: `${PKI_DIR}/${name}.crt`, renewedBy })
const conf = (name: string): CertSource => ({ name, path: `${KUBERNETES_DIR}/${name}`, kubeconfig: true, renewedBy: 'kubeadm' })

export const CERT_SOURCES: CertSource[] = [
  conf('admin.conf'),
  conf('super-admin.conf'),
  pki('apiserver'),
  pki('apiserver-etcd-client'),
  pki('apiserver-kubelet-client'),
  conf('controller-manager.conf'),
  pki('etcd/healthcheck-client'),
  pki('etcd/peer'),
  pki('etcd/server'),
  pki('front-proxy-client'),
  conf('scheduler.conf'),
  pki('ca', 'ca'),
  pki('etcd/ca', 'ca'),
  pki('front-proxy-ca', 'ca'),
  { name: 'kubelet client', path: `${KUBELET_PKI}/kubelet-client-current.pem`, renewedBy: 'kubelet' },
  { name: 'kubelet serving', path: `${KUBELET_PKI}/kubelet.crt`, renewedBy: 'kubelet' },
]

/** Under this many days a certificate is a warning, under the second a failure. */
export const CERT_DAYS = { warn: 90, fail: 30 } as const
const DAY_MS = 86_400_000

export interface CertExpiry {
  name: string
  path: string
  renewedBy: CertSource['renewedBy']
  notAfter: Date
  days: number
}

/** The certificate a PEM file or a kubeconfig holds, if any. */
function certificateIn(text: string, kubeconfig: boolean): X509Certificate | undefined {
  try {
    if (!kubeconfig) return new X509Certificate(text)
    const doc = yaml.load(text) as { users?: { user?: Record<string, string> }[] }
    const data = doc?.users?.[0]?.user?.['client-certificate-data']
    return data ? new X509Certificate(Buffer.from(data, 'base64')) : undefined
  } catch {
    return undefined
  }
}

/** Every certificate of the list this node has, with the days it has left by the node's clock. */
export async function certExpiries(ctx: Context): Promise<CertExpiry[]> {
  const out: CertExpiry[] = []
  for (const s of CERT_SOURCES) {
    const text = await ctx.host.readText(s.path)
    const cert = text === undefined ? undefined : certificateIn(text, !!s.kubeconfig)
    if (!cert) continue
    const notAfter = new Date(cert.validTo)
    out.push({ name: s.name, path: s.path, renewedBy: s.renewedBy, notAfter, days: Math.floor((notAfter.getTime() - ctx.facts.now()) / DAY_MS) })
  }
  return out
}

const FIX: Record<CertSource['renewedBy'], string> = {
  kubeadm: 'on this master: sudo ./install certs renew (kubeadm certs renew all, the control plane restarted, admin.conf refreshed)',
  ca: 'kubeadm cannot renew a CA: every certificate it signed must be replaced with it; plan it before the date (kubernetes.io: Manual Rotation of CA Certificates)',
  kubelet:
    'the kubelet rotates its client certificate itself (rotateCertificates in /var/lib/kubelet/config.yaml): sudo ./install certs renew checks it; a serving certificate it made itself is made again when it is removed and the kubelet restarted',
}

/** Doctor: each certificate under the warning line on its own, named, with the command that renews it; the rest in one line. */
export async function certFindings(ctx: Context): Promise<Finding[]> {
  const certs = await certExpiries(ctx)
  if (!certs.length) return []
  const out: Finding[] = []
  for (const c of certs.filter((c) => c.days < CERT_DAYS.warn).sort((a, b) => a.days - b.days))
    out.push({
      level: c.days < CERT_DAYS.fail ? 'fail' : 'warn',
      check: `certificate ${c.name}`,
      found: `${c.days < 0 ? 'expired' : 'expires'} ${c.notAfter.toISOString().slice(0, 10)} (${c.days < 0 ? `${-c.days} days ago` : `in ${c.days} days`}): ${c.path}`,
      fix: FIX[c.renewedBy],
    })
  const fine = certs.filter((c) => c.days >= CERT_DAYS.warn)
  if (fine.length) {
    const soonest = fine.reduce((a, b) => (a.days <= b.days ? a : b))
    out.push({
      level: 'ok',
      check: 'certificates',
      found: `${fine.length} valid for ${CERT_DAYS.warn} days or more; the soonest, ${soonest.name}, in ${soonest.days} days`,
    })
  }
  return out
}
