import { connect } from 'node:net'
import { networkInterfaces } from 'node:os'
import type { Backend } from './apiserver-proxy.js'
import type { Finding } from './checks.js'
import { KEEPALIVED, VIP_CHECK, VIP_CONFIG, VIP_UNIT_NAME } from './node-paths.js'
import type { Context } from './plan.js'
import { HEADER } from './templates.js'

/**
 * A virtual IP the masters hold between them (cluster.yaml `endpoint: { vip: ... }`):
 * keepalived from the bundle's OS packages, VRRP among the masters only. Chosen over kube-vip:
 * keepalived elects by VRRP, not by a Kubernetes lease, so the address is up before the API
 * server that `kubeadm init` waits for through it (kube-vip needs super-admin.conf mounted for
 * that from 1.29 and back after, kube-vip/kube-vip#684), it is no image in the closed world
 * and no static pod (no hostAliases to rely on, kube-vip/kube-vip#692), and it is the program
 * operators already run beside HAProxy. Its known failure modes are answered here: multicast
 * filtered on the network (unicast to the listed masters instead), a master whose API server
 * is down keeping the address (a check that lowers its priority below every healthy master's),
 * and VRRP blocked by a firewall (the firewalld step opens it on the masters).
 *
 * The API server listens on 6443 on every address, the virtual one included: the master that
 * holds the address answers on it itself.
 */
export interface VipSettings {
  vip: string
  /** The interface the address goes on (the one holding this master's own address). */
  iface: string
  /** This master's own address (VRRP's unicast source) and the others' (its peers). */
  self: string
  masters: Backend[]
  /** This master's place among them: the first is preferred, then the next. */
  index: number
  /** The check script's path (the node's: ${VIP_CHECK}). */
  check?: string
}

/** How often a master says it holds the address, and how long its peers wait before taking over (three intervals and a skew, RFC 5798). */
export const VRRP = { advertSeconds: 1, checkSeconds: 2, fall: 2, rise: 2 } as const
/** Each master's priority: the first highest. A failing API server lowers it by more than the step between masters. */
const PRIORITY_TOP = 150
const PRIORITY_STEP = 10
const CHECK_WEIGHT = -60

/**
 * The VRRP router id every master of one cluster shares: from the address (1 to 255), so two
 * clusters on one network with different addresses rarely collide; the operator can read it in
 * the config and change the address if they do.
 */
export const routerId = (vip: string): number => (vip.split('.').reduce((n, o) => (n * 31 + Number(o)) % 255, 7) % 255) + 1

export function keepalivedConfig(s: VipSettings): string {
  const peers = s.masters.filter((m) => m.address !== s.self)
  return `${HEADER}# The virtual IP of the Kubernetes API (cluster.yaml: endpoint: { vip: ${s.vip} }), held by one master.
global_defs {
    router_id ${s.masters[s.index]?.name ?? s.self}
    enable_script_security
    script_user root
}

# Is this master's API server there? If not, its priority drops below every healthy master's.
vrrp_script kube_apiserver {
    script "${s.check ?? VIP_CHECK}"
    interval ${VRRP.checkSeconds}
    timeout ${VRRP.checkSeconds}
    fall ${VRRP.fall}
    rise ${VRRP.rise}
    weight ${CHECK_WEIGHT}
}

vrrp_instance kube_apiserver {
    state BACKUP
    interface ${s.iface}
    virtual_router_id ${routerId(s.vip)}
    priority ${PRIORITY_TOP - PRIORITY_STEP * s.index}
    advert_int ${VRRP.advertSeconds}
    # Unicast to the other masters: multicast is often filtered.
    unicast_src_ip ${s.self}
    unicast_peer {
${peers.map((p) => `        ${p.address}\n`).join('')}    }
    virtual_ipaddress {
        ${s.vip}/32 dev ${s.iface}
    }
    track_script {
        kube_apiserver
    }
}
`
}

/** The check: the API server accepts a connection on this master (bash's /dev/tcp: no curl on a minimal node). */
export const vipCheck = (): string => `#!/bin/bash
${HEADER.trim()}
# keepalived's check of this master's API server (${VIP_CONFIG}).
exec 3<>/dev/tcp/127.0.0.1/6443
`

/** keepalived in its own unit, beside the distribution's keepalived.service, which stays the site's. */
export const vipUnit = (): string => `${HEADER}[Unit]
Description=kube-airgap: the virtual IP of the Kubernetes API (keepalived)
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
ExecStart=${keepalivedArgv(VIP_CONFIG, '/run').join(' ')}
ExecReload=/bin/kill -HUP $MAINPID
Restart=always
RestartSec=2s

[Install]
WantedBy=multi-user.target
`

/** keepalived in the foreground with this config, its pid files in `run` (its own: the distribution's keepalived may run too). */
export const keepalivedArgv = (config: string, run: string): string[] => [
  KEEPALIVED,
  '--dont-fork',
  '--log-console',
  '--use-file',
  config,
  '--pid',
  `${run}/${VIP_UNIT_NAME}.pid`,
  '--vrrp_pid',
  `${run}/${VIP_UNIT_NAME}-vrrp.pid`,
  '--checkers_pid',
  `${run}/${VIP_UNIT_NAME}-checkers.pid`,
]

/** The interface holding `address` on this machine (for the node itself, not under --root). */
export function interfaceOf(address: string): string | undefined {
  for (const [name, list] of Object.entries(networkInterfaces())) if (list?.some((a) => a.family === 'IPv4' && a.address === address)) return name
  return undefined
}

/** Whether something accepts a TCP connection at host:port within 2 s. */
const answers = (host: string, port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const c = connect({ host, port, timeout: 2000 })
    c.once('connect', () => resolve(true))
    c.once('timeout', () => resolve(false))
    c.once('error', () => resolve(false))
    c.once('close', () => c.destroy())
    c.once('connect', () => c.destroy())
  })

/** Doctor on a master with the virtual IP: whether this master holds it now, and whether the API answers on it. */
export async function vipFindings(ctx: Context): Promise<Finding[]> {
  const text = await ctx.host.readText(VIP_CONFIG)
  const vip = text && /^ {8}(\d+\.\d+\.\d+\.\d+)\/32 dev /m.exec(text)?.[1]
  if (!vip) return []
  const check = `virtual IP ${vip}`
  // Under --root the machine's own interfaces and network are not the node's.
  if (ctx.host.root !== '/') return [{ level: 'ok', check, found: `configured (${VIP_CONFIG})` }]
  const holder = interfaceOf(vip) ? 'this master holds it' : 'another master holds it'
  if (await answers(vip, 6443)) return [{ level: 'ok', check, found: `${holder}; the API answers on ${vip}:6443` }]
  return [
    {
      level: 'fail',
      check,
      found: `${holder}, but nothing answers on ${vip}:6443`,
      fix: `on each master: ip -4 addr | grep ${vip}; systemctl status ${VIP_UNIT_NAME}; journalctl -u ${VIP_UNIT_NAME} (VRRP, protocol 112, must pass between the masters)`,
    },
  ]
}
